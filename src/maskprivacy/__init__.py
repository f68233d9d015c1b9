"""maskprivacy: does a face mask protect sex, race and age from a deep network?"""

__version__ = "0.1.0"
