"""Analytic beating hearts rendered as B-mode echocardiogram clips.

A clip is built in three steps:

1. :func:`contraction` gives a cardiac waveform ``c(t)`` in ``[0, 1]`` per frame (1 = end-
   diastole, 0 = end-systole), normalised so that the largest frame value is exactly 1 and
   the smallest exactly 0.
2. :func:`lv_scale` turns it into the LV scale ``s(t) = s_es + (1 - s_es) c(t)`` with
   ``s_es = (1 - EF/100)^(1/3)``. The LV cavity is one analytic shape scaled uniformly by
   ``s(t)`` about a fixed pivot (the apex in long-axis views, the centre in PSAX), so every
   method-of-disks volume of it scales as ``s³`` and the EF between the largest and the
   smallest frame is exactly ``EF``.
3. :func:`render` draws all frames at once (``(T, H, W)`` numpy arrays): a label map of the
   chambers, a reflectivity per label, Rayleigh speckle, depth attenuation, a small point-
   spread blur and a fan-shaped sector (apex at top centre, black outside).

:func:`lv_tracing` returns the EchoNet-style tracing (long axis then perpendicular chords)
of the very shape that :func:`render` fills, at a given scale.

Coordinates are pixels, ``x`` to the right and ``y`` down. The LV long axis points along
``u = (sin θ, cos θ)`` (θ = ``Heart.angle``, positive tilts the base to the image right);
``n = (cos θ, -sin θ)`` points to the LV lateral wall (image right in apical views).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

VIEWS = ("a4c", "a2c", "psax")

# Label map values. CAMUS keeps 1-3 and maps every other label to 0 (see CAMUS_LABELS).
BACKGROUND, LV, MYOCARDIUM, LA, RV, RA, TISSUE, PERICARDIUM = range(8)
CAMUS_LABELS = np.array([0, 1, 2, 3, 0, 0, 0, 0], dtype=np.uint8)
# Mean echo reflectivity per label: blood pools are dark, myocardium bright, the
# pericardium brightest; BACKGROUND is the soft tissue/lung around the heart.
REFLECTIVITY = np.array([0.10, 0.012, 0.80, 0.012, 0.012, 0.012, 0.28, 0.85], dtype=np.float32)
# Systolic fraction of the cardiac cycle (ED at phase 0, ES at SYSTOLE).
SYSTOLE = 0.35
# Relative systolic wall thickening and atrial filling (fractions of the ED value).
WALL_THICKENING = 0.6
ATRIAL_FILLING = 0.12
# Rayleigh(σ=1) mean, to give the speckle unit mean.
RAYLEIGH_MEAN = float(np.sqrt(np.pi / 2))


@dataclass(frozen=True)
class Sector:
    """The ultrasound fan.

    Args:
        height: image height (px).
        width: image width (px).
        half_angle: half opening angle of the fan (degrees).
        depth: fan radius as a fraction of ``height``; the apex is at the top centre.
        gain: overall brightness factor.
        attenuation: depth attenuation exponent (intensity × ``exp(-attenuation · r/depth)``).
    """

    height: int
    width: int
    half_angle: float = 42.0
    depth: float = 0.97
    gain: float = 1.0
    attenuation: float = 0.9


@dataclass(frozen=True)
class Heart:
    """Geometry of one heart at end-diastole (pixels).

    Args:
        view: ``"a4c"`` (four chambers: LV image right, RV left, atria below), ``"a2c"``
            (LV and LA only) or ``"psax"`` (round LV ring with an RV crescent, upper left).
        apex: LV cavity apex ``(x, y)`` (px); in PSAX the top of the LV circle along ``u``.
        angle: tilt of the LV long axis from vertical (degrees, + = base to the right).
        length: LV cavity long-axis length at ED (px); in PSAX the diameter along ``u``.
        radius: LV cavity half-width at ED (px).
        wall: myocardial wall thickness at ED (px).
        rv_scale: RV cavity width relative to a normal RV (1 = normal, > 1 dilated).
        rv_motion: fractional systolic shrinkage of the RV (0.25 normal, ~0 akinetic).
        asd: atrial septal defect height as a fraction of the LA radius (0 = intact septum).
    """

    view: str
    apex: tuple[float, float]
    angle: float
    length: float
    radius: float
    wall: float
    rv_scale: float = 1.0
    rv_motion: float = 0.25
    asd: float = 0.0

    def __post_init__(self):
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {self.view!r}")

    @property
    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors ``(u, n)``: along the long axis (apex → base) and toward the LV wall."""
        theta = np.deg2rad(self.angle)
        return np.array([np.sin(theta), np.cos(theta)]), np.array([np.cos(theta), -np.sin(theta)])

    @property
    def pivot(self) -> np.ndarray:
        """Fixed point of the LV scaling: the apex (long axis) or the centre (PSAX)."""
        u, _ = self.axes
        shift = self.length / 2 if self.view == "psax" else 0.0
        return np.asarray(self.apex, dtype=float) + shift * u

    def atrial_septum(self) -> tuple[float, float]:
        """Pixel ``(x, y)`` of the interatrial septum centre at ED (A4C)."""
        la_a, la_b, _, _ = _atria(self, 1.0, 1.0)
        u, n = self.axes
        b = la_b - 0.95 * self.radius - self.septum / 2
        return tuple(np.asarray(self.apex) + la_a * u + b * n)

    def rv_free_wall(self) -> tuple[float, float]:
        """Pixel ``(x, y)`` just outside a normal RV's free wall, near the base (A4C, ED).

        A dilated RV (``rv_scale`` > 1) covers this point with blood.
        """
        u, n = self.axes
        rv_radius = 0.85 * self.radius  # normal RV, as in label_map
        b = -(self.radius + self.wall) - 2 * rv_radius + 0.15 * self.radius - 0.5 * self.wall
        return tuple(np.asarray(self.apex) + 0.8 * self.length * u + b * n)

    @property
    def septum(self) -> float:
        """Interatrial septum thickness (px)."""
        return 0.55 * self.wall


def _atria(heart: Heart, s, c):
    """Atrial layout for LV scale ``s`` and contraction ``c`` (scalars or ``(T, 1, 1)``).

    Returns ``(la_a, la_b, ra_b, filling)``: the atria's centre along the axis (from the
    apex; both atria share it), the LA and RA centres across it, and the atrial size factor.
    The atria hang below the annulus, follow the LV base and fill while the LV empties.
    """
    la_along, la_across = 0.32 * heart.length, 0.95 * heart.radius
    filling = 1 + ATRIAL_FILLING * (1 - c)
    la_a = s * heart.length + 0.06 * heart.length + la_along * filling
    la_b = 0.1 * heart.radius
    ra_across = 0.85 * la_across * (1 + 0.3 * (heart.rv_scale - 1))
    ra_b = la_b - la_across * filling - heart.septum - ra_across * filling
    return la_a, la_b, ra_b, filling


def contraction(n_frames: int, fps: float, heart_rate: float, phase: float) -> np.ndarray:
    """Cardiac waveform per frame, min-max normalised over the clip.

    Args:
        n_frames: number of frames T (≥ 2).
        fps: frame rate (Hz).
        heart_rate: beats per minute.
        phase: cycle phase of frame 0, in ``[0, 1)`` (0 = end-diastole).

    Returns:
        ``(T,)`` float array in ``[0, 1]``: fast systolic emptying, slower diastolic filling;
        exactly one frame equals 1 (ED) and one equals 0 (ES) unless two tie.
    """
    if n_frames < 2:
        raise ValueError(f"need at least 2 frames, got {n_frames}")
    p = (phase + np.arange(n_frames) * heart_rate / 60.0 / fps) % 1.0
    systole = 0.5 * (1 + np.cos(np.pi * p / SYSTOLE))
    diastole = 0.5 * (1 - np.cos(np.pi * (p - SYSTOLE) / (1 - SYSTOLE)))
    c = np.where(p < SYSTOLE, systole, diastole)
    return (c - c.min()) / (c.max() - c.min())


def lv_scale(c: np.ndarray, ef: float) -> np.ndarray:
    """LV scale per frame: 1 at ``c = 1`` (ED), ``(1 - ef/100)^(1/3)`` at ``c = 0`` (ES)."""
    if not 0 < ef < 100:
        raise ValueError(f"ef must be in (0, 100), got {ef}")
    s_es = (1 - ef / 100) ** (1 / 3)
    return s_es + (1 - s_es) * np.asarray(c, dtype=float)


def lv_tracing(heart: Heart, scale: float, n_chords: int = 20) -> np.ndarray:
    """EchoNet tracing of the rendered LV cavity at LV scale ``scale``.

    Returns:
        ``(1 + n_chords, 4)`` rows ``X1, Y1, X2, Y2``: row 0 the long axis from the apex to
        the mitral annulus midpoint (PSAX: the diameter along ``u``), then chords
        perpendicular to it at the centres of ``n_chords`` equal slices, septal end first.
    """
    u, n = heart.axes
    pivot = heart.pivot
    apex = pivot + scale * (np.asarray(heart.apex, dtype=float) - pivot)
    centre, semi = _lv_profile(heart)
    a = (np.arange(n_chords) + 0.5) / n_chords * heart.length
    half = heart.radius * np.sqrt(1 - ((a - centre) / semi) ** 2)
    mid = apex[None] + scale * a[:, None] * u[None]
    p1 = mid - scale * half[:, None] * n[None]
    p2 = mid + scale * half[:, None] * n[None]
    axis = np.concatenate([apex, apex + scale * heart.length * u])
    return np.vstack([axis[None], np.hstack([p1, p2])])


def _lv_profile(heart: Heart) -> tuple[float, float]:
    """Along-axis centre and semi-axis of the LV cavity ellipse (cut at ``a = length``)."""
    if heart.view == "psax":
        return heart.length / 2, heart.length / 2
    return heart.length, heart.length


def _ellipse(a, b, ca, cb, ra, rb):
    """Points inside the axis-aligned ellipse (broadcasting; few temporaries, for speed)."""
    x = np.square((a - ca) / ra)
    x += np.square((b - cb) / rb)
    return x <= 1


def label_map(heart: Heart, height: int, width: int, scale: np.ndarray) -> np.ndarray:
    """Chamber labels per frame, ``uint8 (T, H, W)`` (values: module constants LV, LA, ...).

    Args:
        heart: the ED geometry.
        height, width: image size (px).
        scale: ``(T,)`` LV scale per frame (see :func:`lv_scale`). Wall thickening, atrial
            filling and RV motion follow where each frame's scale lies between the clip's
            smallest (ES) and largest (ED) scale.
    """
    s = np.asarray(scale, dtype=np.float32)[:, None, None]  # (T, 1, 1)
    c = np.clip((s - s.min()) / max(float(s.max() - s.min()), 1e-6), 0, 1)
    u, n = heart.axes
    pivot = heart.pivot
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    a0 = (xs - pivot[0]) * u[0] + (ys - pivot[1]) * u[1]  # (H, W) along the axis from pivot
    b0 = (xs - pivot[0]) * n[0] + (ys - pivot[1]) * n[1]  # (H, W) toward the LV wall
    offset = float((pivot - np.asarray(heart.apex)) @ u)  # apex → pivot along u
    a = a0 / s + offset  # (T, H, W) along-axis position in the ED shape, from the apex
    b = b0 / s
    centre, semi = _lv_profile(heart)
    wall = heart.wall * (1 + WALL_THICKENING * (1 - c)) / s  # in ED-shape units
    # Long-axis views cut the LV (and its wall) flat at the mitral annulus.
    inside_base = a <= heart.length if heart.view != "psax" else np.True_
    cavity = _ellipse(a, b, centre, 0, semi, heart.radius) & inside_base
    outer = _ellipse(a, b, centre, 0, semi + wall, heart.radius + wall) & inside_base
    if heart.view == "psax":
        # a0/b0 measured from the LV centre; the crescent sits upper left in the image.
        rv_c = 1 - heart.rv_motion * (1 - c)
        rv_r = (heart.radius + heart.wall) * heart.rv_scale * rv_c
        dx, dy = -0.8 * (heart.radius + heart.wall), -0.45 * (heart.radius + heart.wall)
        rv = ((xs - pivot[0] - dx) / (1.15 * rv_r)) ** 2 + ((ys - pivot[1] - dy) / rv_r) ** 2 <= 1
        env = _superellipse(
            xs,
            ys,
            pivot[0] - 0.3 * heart.radius,
            pivot[1] - 0.15 * heart.radius,
            1.75 * (heart.radius + heart.wall) * max(1.0, heart.rv_scale),
            1.5 * (heart.radius + heart.wall) * max(1.0, heart.rv_scale),
            2,
        )
        labels = np.where(env <= 1, TISSUE, BACKGROUND).astype(np.uint8)
        labels = np.where((env > 1) & (env <= 1.12), PERICARDIUM, labels)
        labels = np.broadcast_to(labels, cavity.shape).copy()
        labels[rv] = RV
        labels[outer] = MYOCARDIUM
        labels[cavity] = LV
        return labels
    # Long-axis views: atria below the annulus, RV (A4C) on the septal side.
    la_along, la_across = 0.32 * heart.length, 0.95 * heart.radius
    la_a, la_b, ra_b, filling = _atria(heart, s, c)
    ra_across = 0.85 * la_across * (1 + 0.3 * (heart.rv_scale - 1))
    a_abs = a0 + offset  # (H, W) from the apex, unscaled
    la = _ellipse(a_abs, b0, la_a, la_b, la_along * filling, la_across * filling)
    rv_r = 0.85 * heart.radius * heart.rv_scale
    right = -(heart.radius + heart.wall)
    if heart.view == "a4c":
        # RV: a half ellipse whose apex sits below the LV apex (closer when dilated), shrinking
        # about its apex by rv_motion; the LV wall clips it into a crescent against the septum.
        rv_apex = heart.length * (0.2 - 0.12 * (heart.rv_scale - 1))
        rv_len = heart.length - rv_apex
        rv_b = right - rv_r + 0.15 * heart.radius
        rv_s = 1 - heart.rv_motion * (1 - c)
        ra_ = (a_abs - rv_apex) / rv_s
        rv = _ellipse(ra_, (b0 - rv_b) / rv_s, rv_len, 0, rv_len, rv_r) & (ra_ <= rv_len)
        ra = _ellipse(a_abs, b0, la_a, ra_b, la_along * filling, ra_across * filling)
        left = rv_b - rv_r - 0.6 * heart.wall
    else:
        left = right - 0.6 * heart.wall
    top = -heart.wall * 1.6
    bottom = 1.06 * heart.length + 2 * la_along * (1 + ATRIAL_FILLING) + 0.6 * heart.wall
    lateral = heart.radius + 1.6 * heart.wall
    env = _superellipse(
        a_abs,
        b0,
        (top + bottom) / 2,
        (left + lateral) / 2,
        (bottom - top) / 2,
        (lateral - left) / 2,
        4,
    )
    labels = np.where(env <= 1, TISSUE, BACKGROUND).astype(np.uint8)
    labels = np.where((env > 1) & (env <= 1.1), PERICARDIUM, labels)
    labels = np.broadcast_to(labels, cavity.shape).copy()
    if heart.view == "a4c":
        labels[rv] = RV
        labels[ra] = RA
    labels[la] = LA
    labels[outer] = MYOCARDIUM
    labels[cavity] = LV
    if heart.view == "a4c" and heart.asd > 0:
        # Defect: blood bridging LA and RA through the septum at mid-atrial height.
        hole = (np.abs(a_abs - la_a) <= heart.asd * la_along) & (b0 > ra_b) & (b0 < la_b)
        labels[hole] = RA
    return labels


def _superellipse(a, b, ca, cb, ra, rb, power):
    return np.abs((a - ca) / ra) ** power + np.abs((b - cb) / rb) ** power


def render(
    heart: Heart,
    sector: Sector,
    scale: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Render a B-mode clip of ``heart`` beating with LV scale ``scale``.

    Args:
        heart: the ED geometry.
        sector: image size and fan settings.
        scale: ``(T,)`` LV scale per frame.
        rng: random generator for the speckle.

    Returns:
        ``(frames, labels)``: ``uint8 (T, H, W)`` grey frames and the label map from
        :func:`label_map`.
    """
    height, width = sector.height, sector.width
    n_frames = len(scale)
    labels = label_map(heart, height, width, scale)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = xs - (width - 1) / 2, ys + 0.5
    radius = np.hypot(dx, dy) / (sector.depth * height)  # 1 at the fan's far edge
    fan = (np.abs(np.arctan2(dx, dy)) <= np.deg2rad(sector.half_angle)) & (radius <= 1)
    # Depth attenuation with a bright near field (chest wall) under the transducer.
    depth_gain = np.exp(-sector.attenuation * radius) * (1 + 1.2 * np.exp(-radius / 0.06))
    depth_gain = (sector.gain * fan * depth_gain).astype(np.float32)  # (H, W)
    # Speckle: mostly fixed to the probe (slowly changing), partly new every frame.
    still = np.sqrt(rng.standard_exponential((height, width), dtype=np.float32) * 2)
    moving = np.sqrt(rng.standard_exponential((n_frames, height, width), dtype=np.float32) * 2)
    speckle = (0.6 / RAYLEIGH_MEAN) * still + (0.4 / RAYLEIGH_MEAN) * moving  # (T, H, W)
    image = REFLECTIVITY[labels] * speckle + 0.015 * moving  # noise floor in blood pools
    image *= depth_gain
    sigma = 0.6 * min(height, width) / 112
    for t in range(n_frames):
        image[t] = cv2.GaussianBlur(image[t], (0, 0), sigma)
    # Log-like compression to 8 bits.
    frames = np.clip(255 * np.sqrt(np.clip(image, 0, None) / 1.1), 0, 255).astype(np.uint8)
    frames *= fan
    return frames, labels
