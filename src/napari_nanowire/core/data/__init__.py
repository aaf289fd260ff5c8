"""Data the project makes or keeps: synthetic micrographs and project folders."""
