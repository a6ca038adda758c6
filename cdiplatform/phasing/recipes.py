"""Named recipes: the settings the papers and the peers use, by name.

=================  ==========================================================
name               what
=================  ==========================================================
``paper_2d``       the baseline of the CDI NN papers: 620 iterations
                   ``3*(20*ER+180*HIO)+20*ER`` with Gaussian shrink-wrap, the
                   final 20 averaged; used on the zero-padded 2D collection
                   (32x32 objects in 64x64, oversampling 2)
``cohere_scan54``  cohere's ``config_rec`` of the real scan 54: the same
                   sequence, beta 0.9, shrink-wrap every iteration (threshold
                   0.1, sigma 1), twin removal at iteration 2, one start, no
                   averaging
=================  ==========================================================
"""

from __future__ import annotations

import dataclasses

from cdiplatform.phasing.settings import PhasingSettings, ShrinkWrap, TwinRemoval

__all__ = ["RECIPES", "recipe"]

RECIPES: dict[str, PhasingSettings] = {
    "paper_2d": PhasingSettings(
        algorithm="3*(20*ER+180*HIO)+20*ER",
        beta=0.9,
        shrink_wrap=ShrinkWrap(threshold=0.1, sigma=1.0, period=1, start=1),
        twin=TwinRemoval(iteration=2, halves=(0, 0)),
        average_last=20,
        initial_support="box",
        support_fraction=0.5,
        n_starts=4,
        keep_best=1,
    ),
    "cohere_scan54": PhasingSettings(
        algorithm="3*(20*ER+180*HIO)+20*ER",
        beta=0.9,
        shrink_wrap=ShrinkWrap(threshold=0.1, sigma=1.0, period=1, start=1),
        twin=TwinRemoval(iteration=2, halves=(0, 0)),
        average_last=0,
        initial_support="box",
        support_fraction=0.5,
        n_starts=1,
        keep_best=1,
    ),
}


def recipe(name: str, **overrides) -> PhasingSettings:
    """The settings of a named recipe, with fields replaced by ``overrides``.

    Raises
    ------
    ValueError
        For an unknown name or field.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown phasing recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    fields = {f.name for f in dataclasses.fields(PhasingSettings)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown phasing setting(s) {sorted(unknown)}; known: {sorted(fields)}")
    return dataclasses.replace(RECIPES[name], **overrides)
