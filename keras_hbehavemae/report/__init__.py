"""The data-flow report: what hBehaveMAE does to one input window, stage by stage.

| module | concept |
|---|---|
| `tables` | `data_flow_tables`: every number of the report, from the geometry and a built model |
| `diagram` | the ASCII diagram of the hierarchy |
| `markdown` | `data_flow_report` and `render_data_flow`: markdown or JSON |
| `formatting` | text helpers |
| `suggestions` | the nearest valid windows and patches when a geometry does not divide |
"""

from keras_hbehavemae.report.markdown import data_flow_report, render_data_flow
from keras_hbehavemae.report.tables import data_flow_tables

__all__ = ["data_flow_report", "data_flow_tables", "render_data_flow"]
