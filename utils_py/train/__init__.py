"""Training of the unspeech model.

- ``loop`` -- options, data split, the training loop, checkpoints, resume, final outputs
- ``progress`` -- progress reporting: log lines, tqdm bar, TensorBoard, the curves plot
"""
