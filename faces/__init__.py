"""Faces from the ICT Face Model Light: the model (model), the expression protocol (expressions), the dataset
generator that renders expressive inputs and neutral targets (generator; make_dataset.py is its command) and
the generated identities that training and the recognition gallery add to the committed data (generated).
"""
