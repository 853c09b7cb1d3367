"""PHI / policy scanning: rules in data files (rules.py), the offline detector (engine.py), flags and reviews
in the archive (archive.py), alerts after a run (alerts.py), and scoring on a labelled set (evaluation.py)."""
