"""Circuit discovery: nodes and their selection (``nodes``), metrics (``metrics``), node effects
(``attribution``), edge effects (``edges``), the circuit graph and its file (``graph``), the
discover pipeline (``discover``), faithfulness and completeness (``faithfulness``, ``evaluate``)
and feature labels from top activating contexts (``labels``)."""
