"""Human review: which examples a person should look at, in which tool, and what they said.

* :mod:`.queue` picks the examples (flagged, borderline, a stratified random sample).
* :mod:`.tools` writes them as Label Studio, Argilla and Prodigy import files.
* :mod:`.annotations` reads those tools' exports back into one ``annotations`` relation.
* :mod:`.verdicts` turns verdicts into curation decisions (reject, edit, override a flag).
"""
