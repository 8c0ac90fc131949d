"""Evaluation suite: features -> statistics -> metrics, the harness, and the paper tables.

- ``benchmarks.features``: extractor registry (``build_extractor``), ``extract_features`` / ``extract_outputs``
- ``benchmarks.statistics``: float64 ``FeatureStats``
- ``benchmarks.metrics``: ``frechet_distance``, ``prdc``, ``inception_score``, ``accuracy``, ``mean_iou``, ...
- ``benchmarks.manifold``: the chunked PRDC and its protocols
- ``benchmarks.reference``: cached reference statistics
- ``benchmarks.samples``: sample files (npz, PNG folders)
- ``benchmarks.evaluate``: ``evaluate_samples``
- ``benchmarks.tables``: table specs with the paper's values, ``render_table``, ``write_table``
"""
