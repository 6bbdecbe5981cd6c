"""Faces: offline embeddings (DeepFace, Dlib model), the face index, enrol and identify."""
