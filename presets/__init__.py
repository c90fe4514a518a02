"""Built-in preset folders, installed as the package `keras_hbehavemae.builtin_presets`.

Load one by name: `HBehaveMAEBackbone.from_preset("hbehavemae_shot7m2")`; list them with
`keras_hbehavemae.presets.list_presets()`.
"""
