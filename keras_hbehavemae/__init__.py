"""keras_hbehavemae: hBehaveMAE, the hierarchical masked autoencoder for behaviour, in Keras 3."""

__version__ = "0.1.0"
