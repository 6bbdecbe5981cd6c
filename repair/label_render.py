"""Drawing QR labels: one label as PNG (Pillow), many on A4 as PDF (reportlab). Pure and CPU-bound: callers run
it off the event loop. What goes on a label is decided in ``repair.labels``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, ImageFont
from qrcode.constants import ERROR_CORRECT_M

from core.errors import ServiceBusy

# Where Debian's CJK font packages put their files (fonts-wqy-microhei is the smallest), searched in this order.
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
CJK_FONT_FILES = ("wqy-microhei.ttc", "wqy-zenhei.ttc", "NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular.otf")
PDF_FONT = "STSong-Light"  # one of the PDF's standard CID fonts: viewers supply it, nothing is embedded
CALL_TO_ACTION = "扫码报修"


@dataclass(frozen=True)
class LabelContent:
    """Everything printed on one label."""

    scene: str
    qr_data: str  # what the QR encodes: WeChat's QR url, or the signed repair-page link
    hospital: str
    department: str
    name: str
    number_caption: str  # 系统编号 | 设备组编号
    number: str
    repair_count: int
    maintenance_score: int | None  # None: nothing to score (a group without devices)

    @property
    def score_text(self) -> str:
        return "—" if self.maintenance_score is None else str(self.maintenance_score)


def qr_image(data: str, *, box_size: int = 10) -> Image.Image:
    """A black-on-white QR of ``data`` with the quiet zone (4 modules) scanners need; level M survives smudges."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box_size, border=4)
    code.add_data(data)
    code.make(fit=True)
    return code.make_image().get_image().convert("1")


# -- PNG ---------------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def find_cjk_font(configured: str = "") -> str:
    """The font file for Chinese text: ``LABEL_FONT`` if set, else the first known CJK font installed."""
    if configured:
        if Path(configured).is_file():
            return configured
        raise ServiceBusy(f"标签字体文件不存在：{configured}（请检查 LABEL_FONT 设置）", code="label_font_missing")
    for folder in FONT_DIRS:
        for name in CJK_FONT_FILES:
            found = next(folder.rglob(name), None) if folder.is_dir() else None
            if found:
                return str(found)
    raise ServiceBusy("未找到中文字体，无法生成标签图片。请安装 fonts-wqy-microhei，或用 LABEL_FONT 指定字体文件",
                      code="label_font_missing")


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: float) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels (a label never wraps into the QR)."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def render_png(label: LabelContent, *, font_path: str = "") -> bytes:
    """One label, 1000×460 px (about 85×39 mm at 300 dpi): the QR on the left, the text on the right."""
    font_file = find_cjk_font(font_path)
    width, height, pad = 1000, 460, 20
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    side = height - 2 * pad
    qr = qr_image(label.qr_data, box_size=1)
    # Whole pixels per module: uneven modules (a non-integer scale) make scanners stumble.
    scale = max(1, side // qr.width)
    qr = qr.resize((qr.width * scale, qr.height * scale), Image.NEAREST)
    offset = pad + (side - qr.width) // 2
    image.paste(qr.convert("RGB"), (offset, offset))

    def font(size: int) -> ImageFont.FreeTypeFont:
        return ImageFont.truetype(font_file, size)

    x = pad + side + 24
    room = width - x - pad
    place = " · ".join(p for p in (label.hospital, label.department) if p)
    lines = [
        (place, font(28), (90, 90, 90), 44),
        (label.name, font(46), (0, 0, 0), 66),
        (f"{label.number_caption}：{label.number}", font(34), (0, 0, 0), 54),
        (f"维修次数：{label.repair_count}", font(30), (40, 40, 40), 44),
        (f"维护评分：{label.score_text}", font(30), (40, 40, 40), 60),
    ]
    y = pad + 6
    for text, face, colour, advance in lines:
        draw.text((x, y), _fit(draw, text, face, room), font=face, fill=colour)
        y += advance
    # The call to action on a solid band, readable from a step away.
    band = font(44)
    draw.rectangle((x, height - pad - 84, width - pad, height - pad), fill=(0, 122, 87))
    draw.text((x + room / 2, height - pad - 42), CALL_TO_ACTION, font=band, fill="white", anchor="mm")
    out = io.BytesIO()
    image.save(out, format="PNG", dpi=(300, 300))
    return out.getvalue()


# -- PDF sheet ---------------------------------------------------------------------------------------------------------
def render_sheet_pdf(title: str, labels: list[LabelContent]) -> bytes:
    """A4 pages of 2×6 labels (95×44 mm, dashed cut lines), each with its QR, name and number."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    if PDF_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(PDF_FONT))
    cols, rows = 2, 6
    cell_w, cell_h = 95 * mm, 44 * mm
    page_w, page_h = A4
    left = (page_w - cols * cell_w) / 2
    top = page_h - 18 * mm
    per_page = cols * rows
    pages = max(1, -(-len(labels) // per_page))

    def fit(text: str, font: str, size: float, width: float) -> str:
        if pdfmetrics.stringWidth(text, font, size) <= width:
            return text
        while text and pdfmetrics.stringWidth(text + "…", font, size) > width:
            text = text[:-1]
        return text + "…"

    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4, pageCompression=1)
    pdf.setTitle(title)
    pdf.setAuthor("medwx")
    for page in range(pages):
        pdf.setFont(PDF_FONT, 11)
        pdf.drawString(left, page_h - 12 * mm, title)
        pdf.drawRightString(left + cols * cell_w, page_h - 12 * mm, f"第 {page + 1}/{pages} 页")
        for i, label in enumerate(labels[page * per_page:(page + 1) * per_page]):
            col, row = i % cols, i // cols
            x0, y0 = left + col * cell_w, top - (row + 1) * cell_h
            pdf.setDash(3, 3)
            pdf.setStrokeGray(0.6)
            pdf.rect(x0, y0, cell_w, cell_h)
            pdf.setDash()
            qr_side = cell_h - 4 * mm
            # A raster QR at about 300 dpi, drawn without smoothing: scanners and printers see crisp modules.
            pdf.drawImage(ImageReader(qr_image(label.qr_data, box_size=8)), x0 + 2 * mm, y0 + 2 * mm,
                          qr_side, qr_side)
            tx = x0 + qr_side + 4 * mm
            room = x0 + cell_w - 3 * mm - tx
            y = y0 + cell_h - 7 * mm
            # STSong-Light has no U+00B7 middle dot: an ideographic space separates the names here.
            place = "\u3000".join(p for p in (label.hospital, label.department) if p)
            pdf.setFillGray(0.35)
            pdf.setFont(PDF_FONT, 7.5)
            pdf.drawString(tx, y, fit(place, PDF_FONT, 7.5, room))
            pdf.setFillGray(0)
            pdf.setFont(PDF_FONT, 11)
            pdf.drawString(tx, y - 6 * mm, fit(label.name, PDF_FONT, 11, room))
            pdf.setFont(PDF_FONT, 8)
            pdf.drawString(tx, y - 12 * mm, label.number_caption)
            pdf.setFont("Helvetica-Bold", 11)  # the number in a Latin face: unambiguous 0/O and 1/l
            pdf.drawString(tx, y - 17 * mm, fit(label.number, "Helvetica-Bold", 11, room))
            pdf.setFont(PDF_FONT, 8)
            pdf.drawString(tx, y - 23 * mm, f"维修次数 {label.repair_count}　维护评分 {label.score_text}")
            pdf.setFillColorRGB(0, 0.48, 0.34)
            pdf.rect(tx, y0 + 3 * mm, room, 7 * mm, stroke=0, fill=1)
            pdf.setFillGray(1)
            pdf.setFont(PDF_FONT, 11)
            pdf.drawCentredString(tx + room / 2, y0 + 5 * mm, CALL_TO_ACTION)
            pdf.setFillGray(0)
            pdf.setStrokeGray(0)
        pdf.showPage()
    pdf.save()
    return out.getvalue()
