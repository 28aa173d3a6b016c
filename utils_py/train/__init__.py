"""Training of the unspeech model.

- ``loop`` -- options, data split, the training loop, checkpoints, resume, final outputs
"""
