"""Readers turn one raw input (a JSON value, a slide, a volume) into a typed, validated object.

Import the submodule you need (``from chimera_surv.readers.clinical import parse_clinical``): nothing is
imported here, so the light readers never pull in openslide or SimpleITK.
"""
