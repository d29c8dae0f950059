"""The authors' pipeline, kept as the reference our engine is tested and benchmarked against.

As in their notebook (github.com/jeunsom/TGD, ``GenPI_Images.ipynb``): per channel and scan,
x = pixel / 255.0, the lower-star filtration of the path graph as a sparse distance matrix for
ripser (H0), finite bars with death - birth > threshold, then ``persim.PersImage``, then
``uint8(pi / max * 255)``. One image at a time: about 0.2 s per image. Needs ``ripser`` and
``persim`` (installed from requirements.txt for the tests and benchmarks).
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

from tgd_core.topology.paper import PaperPIConfig, scan_signals


def reference_h0_diagram(x: np.ndarray) -> np.ndarray:
    """ripser's H0 diagram of the sublevel filtration of the 1-D signal x on the path graph."""
    from ripser import ripser
    from scipy import sparse

    n = len(x)
    rows = np.concatenate([np.arange(n - 1), np.arange(n)])
    cols = np.concatenate([np.arange(1, n), np.arange(n)])
    vals = np.concatenate([np.maximum(x[:-1], x[1:]), x])
    dist = sparse.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()
    return ripser(dist, maxdim=0, distance_matrix=True)["dgms"][0]


def reference_paper_pis(image: np.ndarray, config: PaperPIConfig | None = None):
    """(pi_raw float64 6×ny×nx, pi_uint8, diagrams) of one uint8 H×W×3 image, the authors' way."""
    from persim import PersImage

    config = config or PaperPIConfig()
    # PersImage prints its parameters and is deprecated (still the authors' class)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pim = PersImage(pixels=list(config.resolution), spread=config.spread,
                        specs={"minBD": config.min_bd, "maxBD": config.max_bd})
    raw, u8, diagrams = [], [], []
    for signal in scan_signals(image[None])[0]:
        dgm = reference_h0_diagram(signal / 255.0)
        dgm = dgm[np.isfinite(dgm[:, 1])]
        dgm = dgm[(dgm[:, 1] - dgm[:, 0]) > config.threshold]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = np.asarray(pim.transform(dgm), dtype=np.float64)
        raw.append(img)
        norm_img = img / np.max(img) if np.max(img) > 0 else img
        u8.append((norm_img * 255).astype("uint8"))
        diagrams.append(dgm)
    return np.stack(raw), np.stack(u8), diagrams
