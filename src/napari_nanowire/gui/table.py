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
    """Shows a DataFrame; replace it with :meth:`set_frame`. A click on a column header sorts
    the rows by it (empty cells last), and a new frame keeps that order."""

    def __init__(self, frame: pd.DataFrame | None = None) -> None:
        super().__init__()
        self.frame = frame if frame is not None else pd.DataFrame()
        self.order: tuple[str, bool] | None = None  # (column, ascending) the rows are sorted by

    def set_frame(self, frame: pd.DataFrame) -> None:
        """Show ``frame`` instead of the current table, in the chosen order."""
        self.beginResetModel()
        self.frame = self._sorted(frame)
        self.endResetModel()

    def _sorted(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` in the chosen order (as given when none is chosen or its column is gone)."""
        if self.order is not None and self.order[0] in frame.columns:
            column, ascending = self.order
            frame = frame.sort_values(column, ascending=ascending, kind="stable")
        return frame.reset_index(drop=True)

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        """Sort the rows by column ``column`` (Qt calls this on a header click)."""
        if not 0 <= column < len(self.frame.columns):
            return
        self.layoutAboutToBeChanged.emit()
        self.order = (self.frame.columns[column], order == Qt.SortOrder.AscendingOrder)
        self.frame = self._sorted(self.frame)
        self.layoutChanged.emit()

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
    view.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # as given
    view.setSortingEnabled(True)
    view.setMinimumHeight(120)
    model.modelReset.connect(lambda: fit_columns(view))
    view.verticalHeader().setDefaultSectionSize(20)
    return view
