"""Faces: offline embeddings (DeepFace, Dlib model), the face index, enrol and identify.

``faces.embed`` (photo → vector, in the embedding processes), ``index.identify`` / ``enrol`` / ``forget``,
``runtime.start`` / ``stop``; ``setup`` prepares the weights. Kept import-light: the embedding processes import
``vision.engine`` through this package.
"""
