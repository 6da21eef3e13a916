"""Image classification: is this image of the chosen kind? (see ``scenario.py``)."""
