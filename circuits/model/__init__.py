"""Model access and splicing: the names of places (``places``), each architecture's map from
place names to modules (``adapters``), loading models (``loading``), reading activations
(``activations``), splicing dictionaries into a forward pass (``splice``) and one spliced pass
of a prompt batch as attribution needs it (``runner``)."""
