"""The paper's published numbers (Burda et al. 2016, Tables 1 and 3), and which of them a data set is shown beside.

The paper reports MNIST and Omniglot (Table 1, dynamic binarization) and MNIST with Larochelle's fixed
binarization (Table 3). A table of another data set is printed beside the closest of them
(:func:`paper_key`), and every place that shows it says so: the column is labelled ``MNIST*``
(:func:`paper_label`) and a footnote explains the star (:func:`paper_footnote`).
"""

__all__ = ["PAPER_TABLE1", "PAPER_TABLE3", "paper_key", "is_substituted", "paper_label", "paper_footnote"]

#: The paper's Table 1, test NLL (nats) and active units: {(data, layers, k): (vae_nll, vae_au, iwae_nll, iwae_au)}.
PAPER_TABLE1 = {
    ("MNIST", 1, 1): (86.76, "19", 86.76, "19"),
    ("MNIST", 1, 5): (86.47, "20", 85.54, "22"),
    ("MNIST", 1, 50): (86.35, "20", 84.78, "25"),
    ("MNIST", 2, 1): (85.33, "16+5", 85.33, "16+5"),
    ("MNIST", 2, 5): (85.01, "17+5", 83.89, "21+5"),
    ("MNIST", 2, 50): (84.78, "17+5", 82.90, "26+7"),
    ("Omniglot", 1, 1): (108.11, "28", 108.11, "28"),
    ("Omniglot", 1, 5): (107.62, "28", 106.12, "34"),
    ("Omniglot", 1, 50): (107.80, "28", 104.67, "41"),
    ("Omniglot", 2, 1): (107.58, "28+4", 107.56, "30+5"),
    ("Omniglot", 2, 5): (106.31, "30+5", 104.79, "38+6"),
    ("Omniglot", 2, 50): (106.30, "30+5", 103.38, "44+7"),
}
#: The paper's Table 3 (fixed binarization, 1 layer): {k: (vae_nll, iwae_nll)}.
PAPER_TABLE3 = {1: (88.71, 88.71), 5: (88.83, 87.63), 50: (89.05, 87.10)}


def paper_key(data_name):
    """The data set of :data:`PAPER_TABLE1` whose rows a table of ``data_name`` is shown beside.

    ``"omniglot"`` -> ``"Omniglot"``; every other name -> ``"MNIST"``. The paper has no Fashion-MNIST or
    mnist5k rows: those tables are shown beside MNIST's, a reference point and not the same experiment
    (:func:`paper_label` and :func:`paper_footnote` say so wherever it is printed).
    """
    return "Omniglot" if data_name == "omniglot" else "MNIST"


def is_substituted(data_name):
    """Whether a table of ``data_name`` is shown beside another data set's numbers (the paper has none of its own)."""
    return data_name not in ("mnist", "omniglot", "binarized-mnist", None)


def paper_label(data_name):
    """The paper's data set as a column label: ``"MNIST"``, ``"Omniglot"``, or ``"MNIST*"`` for a data set the
    paper does not have (the star refers to :func:`paper_footnote`)."""
    return paper_key(data_name) + ("*" if is_substituted(data_name) else "")


def paper_footnote(data_name):
    """The sentence that explains the star of :func:`paper_label` (empty when there is none)."""
    if not is_substituted(data_name):
        return ""
    return (f"*The paper has no {data_name} results: its {paper_key(data_name)} numbers are shown as a reference "
            "point, not the same experiment.")
