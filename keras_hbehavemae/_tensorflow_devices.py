"""Keeps TensorFlow (used for tf.data and export) off the GPU under the JAX/torch backends.

TensorFlow claims all GPU memory when it first initialises a GPU. Under the JAX or torch
backend that memory belongs to the training framework, so TensorFlow is limited to the
CPU before anything initialises it. Nothing happens if TensorFlow is not installed, or
under the TensorFlow backend.
"""

import importlib.util

import keras

if keras.config.backend() != "tensorflow" and importlib.util.find_spec("tensorflow"):
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow already initialised its devices: leave them as set
        pass
