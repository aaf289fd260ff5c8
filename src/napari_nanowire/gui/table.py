"""A read-only Qt table over a pandas DataFrame, fast for tens of thousands of rows.

Qt asks only for the cells on screen, so a table of every domain in a large stack stays cheap;
a QTableWidget would build one item per cell up front.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt
from qtpy.QtWidgets import QAbstractItemView, QTableView


def format_cell(value) -> str:
    """Numbers with four significant digits, flags as yes/no, NaN and missing as an empty cell."""
    if value is pd.NA:
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return "" if not np.isfinite(value) else f"{value:.4g}"
    return str(value)


class DataFrameModel(QAbstractTableModel):
    """Shows a DataFrame; replace it with :meth:`set_frame`."""

    def __init__(self, frame: pd.DataFrame | None = None) -> None:
        super().__init__()
        self.frame = frame if frame is not None else pd.DataFrame()

    def set_frame(self, frame: pd.DataFrame) -> None:
        """Show ``frame`` instead of the current table."""
        self.beginResetModel()
        self.frame = frame.reset_index(drop=True)
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.frame)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.frame.columns)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and index.isValid():
            return format_cell(self.frame.iat[index.row(), index.column()])
        return None

    def headerData(self, section: int, orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return str(self.frame.columns[section])
        return str(section + 1)


FIT_ROWS = 2000
"""Columns are fitted to their contents up to this many rows (fitting reads every row)."""


def fit_columns(view: QTableView) -> None:
    """Columns as wide as their contents, for tables small enough to measure quickly."""
    if view.model().rowCount() <= FIT_ROWS:
        view.resizeColumnsToContents()


def frame_view(model: DataFrameModel) -> QTableView:
    """A read-only view of ``model`` that selects whole rows."""
    view = QTableView()
    view.setModel(model)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.verticalHeader().setVisible(False)
    view.setMinimumHeight(120)
    model.modelReset.connect(lambda: fit_columns(view))
    view.verticalHeader().setDefaultSectionSize(20)
    return view
