"""What circuits are found on: prompt sets (``prompts``), the subject-verb agreement sets
(``agreement_sets``, files in ``agreement/``) and corpora of text (``corpus``)."""
