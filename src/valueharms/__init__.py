"""valueharms: Study A (Choi et al.) and Study B (Arora et al.) as a Snakemake pipeline."""

__version__ = "0.1.0"

# Ten Schwartz values in the fixed column order used by every table (METHODS A1).
VALUES: tuple[str, ...] = (
    "Achievement",
    "Benevolence",
    "Conformity",
    "Hedonism",
    "Power",
    "Security",
    "Self-direction",
    "Stimulation",
    "Tradition",
    "Universalism",
)
