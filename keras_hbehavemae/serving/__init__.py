"""Serving: the TensorFlow SavedModel export (`export.export_saved_model`)."""

from keras_hbehavemae.serving.export import export_saved_model

__all__ = ["export_saved_model"]
