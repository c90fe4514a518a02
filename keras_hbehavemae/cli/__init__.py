"""The command-line apps: `hbehavemae <command>`, also installed as `hbehavemae-<command>`.

| command | module | what it does |
|---|---|---|
| `pretrain` | `pretrain` | pretrain on synthetic data, a published dataset or your files |
| `embed` | `embed` | per-frame hierarchical embeddings of sequences |
| `evaluate` | `evaluate` | linear probes of embeddings against labels |
| `export` | `export` | a TensorFlow SavedModel for serving |
| `convert` | `convert` | a published PyTorch checkpoint → a preset |
| `data-flow` | `data_flow` | what the model does to one window, stage by stage |
| `plot-training` | `plot_training` | training curves of a run |
| `plot-reconstruction` | `plot_reconstruction` | a masked reconstruction, drawn |

Each module defines its flags when imported, so `main` imports only the command asked for.
"""
