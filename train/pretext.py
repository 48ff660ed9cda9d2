"""A dense pretext loss that teaches a small Qwen2.5-VL where its image tokens are.

Qwen2.5-VL's vision tower has no absolute position embedding: its attention carries 2-D RoPE
(relative offsets only), so on a plain background every image token looks the same wherever it
is. The language model gives image tokens M-RoPE positions (height and width sections, see
``Qwen2_5_VLModel.get_rope_index`` in transformers), so a layer can read a token's row and column
from its offsets to the text before the image, but the few answer tokens of a box target teach
that too slowly for a model trained from scratch (train/README.md, the grounding A/B).

:class:`PositionPretext` holds linear heads that read, from the language model's hidden state of
each image token, its row and its column on the merged grid and, optionally, whether it covers an
object. Their cross-entropy is added to the training loss; the heads are not part of the model
and are dropped after training, so the saved checkpoint is the plain architecture (export,
llama.cpp and the runtime are unchanged).

Image tokens follow the merged grid in raster order, one image after another (the processor
groups each ``merge_size x merge_size`` block of patches into one token; the window reordering
of the vision tower is undone at its end): token ``k`` of an image whose merged grid is
``rows x cols`` is row ``k // cols``, column ``k % cols``.
"""

from __future__ import annotations

import torch
from torch import nn


def grid_labels(
    image_grid_thw: torch.Tensor, merge_size: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column on the merged grid of every image token, images in order.

    Args:
        image_grid_thw: ``(n_images, 3)`` int, the processor's ``(t, h, w)`` in patches.
        merge_size: the vision tower's ``spatial_merge_size`` (2 for Qwen2.5-VL).

    Returns:
        ``(rows, cols)``: two ``(n_tokens,)`` int64 tensors, ``n_tokens`` the sum over images of
        ``t * (h / merge_size) * (w / merge_size)``.
    """
    rows, cols = [], []
    for t, h, w in image_grid_thw.tolist():
        n_rows, n_cols = h // merge_size, w // merge_size
        k = torch.arange(t * n_rows * n_cols)
        rows.append((k // n_cols) % n_rows)
        cols.append(k % n_cols)
    return torch.cat(rows), torch.cat(cols)


class PositionPretext(nn.Module):
    """Heads for the dense pretext loss (module docstring).

    Args:
        hidden_size: the language model's width (``text_config.hidden_size``).
        max_rows: most merged rows of an image seen in training.
        max_cols: most merged columns.
        merge_size: the vision tower's ``spatial_merge_size``.
    """

    def __init__(self, hidden_size: int, max_rows: int, max_cols: int, merge_size: int = 2):
        super().__init__()
        self.merge_size = merge_size
        self.row = nn.Linear(hidden_size, max_rows)
        self.col = nn.Linear(hidden_size, max_cols)
        self.cover = nn.Linear(hidden_size, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        input_ids: torch.Tensor,
        image_token_id: int,
        image_grid_thw: torch.Tensor,
        cover: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The summed cross-entropy of row, column and (when given) cover.

        Args:
            hidden_states: ``(batch, seq, hidden_size)`` float, one layer's output of the
                language model (``output_hidden_states=True``).
            input_ids: ``(batch, seq)``, the prompt with its image placeholders expanded.
            image_token_id: the model's ``config.image_token_id``.
            image_grid_thw: ``(n_images, 3)``, as given to the model.
            cover: ``(n_tokens,)`` bool or int, 1 where an image token covers an object (same
                order as the tokens), or ``None`` to leave that head out.

        Raises:
            ValueError: when there are no image tokens, when they do not match
                ``image_grid_thw``, when a grid is larger than the heads, or when ``cover`` has
                another length.
        """
        h = hidden_states[input_ids == image_token_id]
        if len(h) == 0 or len(image_grid_thw) == 0:
            raise ValueError("the pretext needs image tokens: none in input_ids or image_grid_thw")
        rows, cols = grid_labels(image_grid_thw.cpu(), self.merge_size)
        if len(rows) != len(h):
            raise ValueError(
                f"{len(h)} image tokens in input_ids but image_grid_thw gives {len(rows)}"
            )
        if int(rows.max()) >= self.row.out_features or int(cols.max()) >= self.col.out_features:
            raise ValueError(
                f"a merged grid of {int(rows.max()) + 1} x {int(cols.max()) + 1} tokens is larger"
                f" than the heads' {self.row.out_features} x {self.col.out_features}"
            )
        ce = nn.functional.cross_entropy
        loss = ce(self.row(h), rows.to(h.device)) + ce(self.col(h), cols.to(h.device))
        if cover is not None:
            if len(cover) != len(h):
                raise ValueError(f"cover has {len(cover)} labels for {len(h)} image tokens")
            loss = loss + ce(self.cover(h), cover.to(h.device).long())
        return loss


__all__ = ["PositionPretext", "grid_labels"]
