"""The shift report as a PDF (fpdf2): the line's estimated rates, KPIs, charts, overturned parts.

The line's estimated FNR and FPR with their 95% intervals come first
(:func:`services.shift_report.summary_figures`; "not enough parts" where a figure cannot be
estimated), then the KPIs and the rates on reviewed parts, labelled as unable to see missed
defects. The text is set in DejaVu Sans, the font matplotlib ships, so any user or project
name prints (PDF core fonts know Latin-1 only). :func:`shift_report_pdf` is the entry point.
"""

from __future__ import annotations

import io
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import FontFace

from services.shift_report import (
    NOT_ENOUGH_PARTS,
    REVIEWED_ONLY,
    ReportFigure,
    ShiftReport,
    summary_figures,
)
from services.shift_report_charts import reviews_per_hour_png, score_distribution_png

FONT = "DejaVu"
MAX_LISTED_PARTS = 200
"""Overturned parts listed in the PDF at most; the CSV has every part."""
HEADINGS = FontFace(emphasis="BOLD", fill_color=(230, 230, 230))
NO_DATA = "No part was scored, reviewed or audited in this window."
LINE_HEADING = "The line's estimated FNR and FPR (95% interval)"
LINE_EXPLAINED = (
    "Over the parts the line decided in the window, estimated from the reviews of the parts "
    "sent to a human and of the audited passed parts, each weighted by its known audit odds: "
    f'the Dashboard\'s headline estimate. "{NOT_ENOUGH_PARTS.capitalize()}": too few reviewed '
    "or audited parts in the window to estimate it."
)
REVIEWED_HEADING = REVIEWED_ONLY.capitalize()
REVIEWED_EXPLAINED = (
    "Over the parts reviewed in the window (95% Wilson intervals). Passed parts are reviewed "
    "only when audited, so these rates cannot see the defects the line let through; the "
    "line's estimated rates above can."
)


def _font_file(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name


def percent(value: float | None) -> str:
    """A rate as ``12.5%``; an en dash without one."""
    return "–" if value is None else f"{value:.1%}"


def figure_cells(figure: ReportFigure) -> tuple[str, str, str, str]:
    """``(label, rate, 95% interval, basis)`` of a figure; "not enough parts" without a rate."""
    if figure.rate is None:
        return figure.label, NOT_ENOUGH_PARTS, "–", figure.basis
    interval = f"{percent(figure.low)} – {percent(figure.high)}"
    return figure.label, percent(figure.rate), interval, figure.basis


class _ReportPDF(FPDF):
    def __init__(self, report: ShiftReport) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.report = report
        self.add_font(FONT, "", _font_file("DejaVuSans.ttf"))
        self.add_font(FONT, "B", _font_file("DejaVuSans-Bold.ttf"))
        self.set_auto_page_break(auto=True, margin=15)
        self.set_title(f"Shift report: {report.project}, {report.title}")
        self.set_creator("Loupe")

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, size=7)
        self.cell(0, 5, f"Loupe shift report, {self.report.project}, page {self.page_no()}")

    def heading(self, text: str) -> None:
        self.ln(3)
        self.set_font(FONT, "B", 12)
        self.cell(0, 7, text, new_x="LMARGIN", new_y="NEXT")
        self.set_font(FONT, size=9)

    def paragraph(self, text: str) -> None:
        self.set_font(FONT, size=9)
        self.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT")

    def grid(self, rows: list[tuple[str, ...]], widths: tuple[int, ...]) -> None:
        """A table whose first row is its heading."""
        self.set_font(FONT, size=8)
        with self.table(col_widths=widths, headings_style=HEADINGS, line_height=5) as table:
            for values in rows:
                row = table.row()
                for value in values:
                    row.cell(value)

    def chart(self, png: bytes | None) -> None:
        if png is not None:
            self.image(io.BytesIO(png), w=self.epw)


def shift_report_pdf(report: ShiftReport) -> bytes:
    """Render a shift report as PDF bytes (A4, one or more pages)."""
    pdf = _ReportPDF(report)
    pdf.add_page()
    pdf.set_font(FONT, "B", 16)
    pdf.cell(0, 9, f"Shift report: {report.project}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, size=10)
    pdf.cell(0, 6, report.title, new_x="LMARGIN", new_y="NEXT")
    window = f"{report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC"
    pdf.paragraph(f"Window: {window}. Generated {report.generated_at:%Y-%m-%d %H:%M} UTC.")
    if report.is_empty:
        pdf.heading("Summary")
        pdf.paragraph(NO_DATA)
        return bytes(pdf.output())

    figures = [figure_cells(figure) for figure in summary_figures(report)]
    pdf.heading(LINE_HEADING)
    pdf.grid([("Rate", "Value", "95% interval", "Basis"), *figures[:2]], (50, 30, 32, 68))
    pdf.paragraph(LINE_EXPLAINED)

    pdf.heading("Summary")
    pdf.grid(
        [
            ("Figure", "Parts"),
            ("Parts scored", str(report.n_scored)),
            ("Flagged by the model", str(report.n_flagged)),
            ("Parts reviewed (current label given in the window)", str(report.n_reviewed)),
            ("Labels given (corrections included)", str(report.n_labels)),
            ("Missed defects (labelled defect, passed)", str(len(report.missed))),
            ("Overturned verdicts (label differs from verdict)", str(len(report.overturned))),
        ],
        (130, 50),
    )

    pdf.heading(REVIEWED_HEADING)
    pdf.grid([("Rate", "Value", "95% interval", "Counts"), *figures[2:]], (60, 25, 45, 50))
    pdf.paragraph(REVIEWED_EXPLAINED)

    pdf.heading("Charts")
    score_chart, hour_chart = score_distribution_png(report), reviews_per_hour_png(report)
    if score_chart is None and hour_chart is None:
        pdf.paragraph("No reviewed part to chart.")
    pdf.chart(score_chart)
    pdf.chart(hour_chart)

    pdf.heading("Who reviewed what")
    if report.reviewers:
        rows = [("Reviewer", "Labels given", "Parts", "Defects", "Overturned", "Median s")]
        rows += [
            (
                person.reviewer,
                str(person.n_labels),
                str(person.n_parts),
                str(person.n_defects),
                str(person.n_overturned),
                "–" if person.median_seconds is None else f"{person.median_seconds:.1f}",
            )
            for person in report.reviewers
        ]
        pdf.grid(rows, (50, 26, 26, 26, 26, 26))
    else:
        pdf.paragraph("No label was given in this window.")

    pdf.heading("Missed and overturned parts")
    overturned = report.overturned
    if not overturned:
        pdf.paragraph("No reviewer overturned a model verdict in this window.")
    else:
        rows = [("Kind", "Part", "Reviewed", "Reviewer", "Label", "Score", "Threshold", "Model")]
        rows += [
            (
                "missed" if part.missed else "false alarm",
                part.name,
                f"{part.reviewed_at:%H:%M}",
                part.reviewer,
                part.label + (f" ({part.defect_type})" if part.defect_type else ""),
                f"{part.score:.4g}",
                f"{part.threshold:.4g}",
                part.model_label or f"v{part.model_version}",
            )
            for part in overturned[:MAX_LISTED_PARTS]
        ]
        pdf.grid(rows, (20, 40, 17, 25, 30, 17, 17, 14))
        if len(overturned) > MAX_LISTED_PARTS:
            more = len(overturned) - MAX_LISTED_PARTS
            pdf.paragraph(f"{more} more overturned parts are listed in the CSV.")
    return bytes(pdf.output())
