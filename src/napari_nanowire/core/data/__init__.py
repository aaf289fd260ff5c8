"""Data the project makes or keeps: synthetic micrographs and project folders.

- ``synthetic``: labelled synthetic TEM images of the four morphologies, with masks and truth
- ``scenes``: wire scenes in nm (random walks, placement) for the four classes
- ``imaging``: bright-field image formation of a scene (stain, film, illumination, noise)
- ``project``: a project folder holding labels, masks and models, saved as they change
"""
