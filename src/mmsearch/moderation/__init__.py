"""Matching images against each other for moderation: fingerprints, thresholds, lookup.

Moderation asks "is this the same picture as one we know?" and must answer it with a
known false-match rate. This package holds the parts of that answer that need no
storage: content cropping (``content``), PDQ with its eight symmetries (``pdq``), one
fingerprint record per image and what "exact" and "near" mean (``fingerprints``),
thresholds chosen from data (``calibration``) and a lookup that does not compare all
pairs (``hash_index``). It sits above ``encoders`` (pHash/dHash) and ``media``
(bounded decoding), and below everything that will apply policies.
"""
