import csv
from pathlib import Path

import numpy as np

ITEMS = [
    "ipcrtiva",
    "impricha",
    "ipeqopta",
    "ipshabta",
    "impsafea",
    "impdiffa",
    "ipfrulea",
    "ipudrsta",
    "ipmodsta",
    "ipgdtima",
    "impfreea",
    "iphlppla",
    "ipsucesa",
    "ipstrgva",
    "ipadvnta",
    "ipbhprpa",
    "iprspota",
    "iplylfra",
    "impenva",
    "imptrada",
    "impfuna",
]
INVALID = {7: ("impfuna", "7"), 23: ("ipstrgva", "77"), 41: ("ipeqopta", "")}


def main(n=60, seed=20250101):
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(10000, 99999), size=n, replace=False)
    rows = []
    for r in range(n):
        level = rng.uniform(1.5, 4.5)
        tilt = rng.normal(0.0, 1.2, size=len(ITEMS))
        raw = np.clip(np.rint(level + tilt), 1, 6).astype(int)
        row = {"idno": str(ids[r]), **{c: str(v) for c, v in zip(ITEMS, raw, strict=True)}}
        if r in INVALID:
            col, code = INVALID[r]
            row[col] = code
        rows.append(row)
    out = Path(__file__).with_name("ess.csv")
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["idno", *ITEMS], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
