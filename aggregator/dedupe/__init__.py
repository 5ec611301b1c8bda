"""Pure de-duplication: item identity and same-story matching across publishers.

Story matching lives in :mod:`.text` (normalization, shingles), :mod:`.aliases` (entity names
across languages), :mod:`.minhash` (signatures and LSH band keys for the candidate index),
:mod:`.stories` (the pair decision and its explanation) and :mod:`.semantic` (the seam for an
optional embedding or translation backend; :mod:`.embeddings` is one).
"""
