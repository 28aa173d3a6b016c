"""The unspeech model.

- ``network``    -- the siamese towers (transforms, conv stack, embedding head); build, save, load
- ``objectives`` -- the training objectives (the original's labelled pairs, and in-batch)
- ``sampler``    -- seeded (target, context) windows and negatives drawn from a feature set
"""
