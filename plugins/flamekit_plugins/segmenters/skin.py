"""``skin``: a skin mask from the 68 landmarks, refined by GrabCut with colour models learnt from
the photo itself.

Why not a network: fitting needs a mask that is right on the face the landmarks describe, with
no weights to download. The landmarks give the face's extent; colour models learnt from this
very photo remove what covers the face (hair, hands, glasses, beard). Steps:

1. **Geometry.** The face's *up* direction is the perpendicular to the line through the eye
   centres (so tilted and rolled heads work); its *size* is the nasion-to-chin distance
   (points 27 and 8). The face region is the convex hull of the jaw line (0-16) and of the
   brows (17-26) pushed up along *up* by ``forehead`` x size, which reaches the forehead that
   the landmarks do not cover. Feature holes are cut out: the eyes (36-41, 42-47, dilated by
   ``eye_margin`` x the eye width), a band ``brow_width`` x size wide along each brow (17-21,
   22-26; iBUG brow points run along the brow's upper edge, so the band sits a little below
   them) and the mouth interior (60-67).
2. **Colour.** GrabCut (Rother, Kolmogorov and Blake 2004: a 5-component colour mixture for
   the face and one for the rest, plus a contrast-sensitive smoothness term, solved by graph
   cuts and iterated) separates skin from the rest, seeded by the landmarks: the *core* (both
   cheeks and the nose) is certainly skin, the face region probably skin, the feature holes
   and a band around the region probably not, everything further away not. The split is
   thus adaptive: the boundary falls where this photo's skin meets this photo's hair or
   background, and the smoothness term keeps it from fraying. Two guards make the seeding
   robust. A Gaussian of the core's skin (CIE Lab, lightness half-weighted because shading
   changes it far more than skin's chroma, trimmed so a beard or finger over the core does
   not shift it) marks the region's pixels beyond its 99.99% chi-square quantile as probably
   not skin, so the face mixture does not learn hair or frames from the start (the lips stay
   face, whatever their colour). And skin that goes on above the region (a high forehead, a
   bald head) would teach the "rest" mixture the face's own colour, so pixels above the brows
   within the Gaussian's 97.5% quantile are seeded as probable skin; below and beside the
   region (neck, hands, ears) nothing changes, so a hand over the face is still told apart
   when it is also seen outside it. GrabCut's smoothness cost is per neighbouring pixel pair
   and its colour cost per pixel, so it runs on a crop resampled to a fixed face size (130 px
   nasion to chin): the same face gives the same mask at any resolution, and large photos
   are fast.
3. **Cleanup.** A morphological opening removes thin strays (hair strands, frame edges); the
   components that touch the core or are large are kept (a small detached patch is not
   face); small holes (highlights, freckles) are filled; the mask is brought back to full
   resolution and the feature holes are cut again.

What counts as skin: the face from the jaw line to the forehead, lips included; not ears,
neck, hair, eyes, brows or the inside of the mouth. Tuned on ten aligned FFHQ portraits against
a face-parsing network's masks with general rules (fractions of the face size, chi-square
quantiles), not per-image constants: mean IoU 0.83 there, against 0.75 for the hull of the
jaw and brow landmarks, although those masks count eyes, brows and teeth as face (cutting
them out costs about 0.07). Known limits: a skin-coloured hand over the face is kept unless
the hand also shows outside the face region; thin glasses frames are often kept; dark hair
whose chroma is close to the skin's (and hair that is not seen outside the region) may stay.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from flamekit.plugin_types import ImageError, Segmenter

__all__ = ["FaceGeometry", "SkinSegmenter", "face_geometry"]

JAW = slice(0, 17)
BROWS = slice(17, 27)
RIGHT_BROW = slice(17, 22)  # the subject's right, on the image's left
LEFT_BROW = slice(22, 27)
RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
OUTER_MOUTH = slice(48, 60)
INNER_MOUTH = slice(60, 68)

# Chi-square quantiles, 3 degrees of freedom (the Lab features).
_CHI2_3_975 = 9.35
_CHI2_3_9999 = 21.11
_WORK_SIZE = 130.0  # face size (pixels, nasion to chin) the colour step runs at
_MIN_SIZE = 10.0  # smaller faces have no skin worth fitting to (and would be upsampled a lot)
_LIGHTNESS_WEIGHT = 0.5  # shading changes lightness far more than the chroma of skin


@dataclass(frozen=True)
class FaceGeometry:
    """Frame of a face from its landmarks: unit ``up``/``right`` vectors (image x, y), size."""

    up: np.ndarray
    right: np.ndarray
    size: float
    eye_width: float


def face_geometry(landmarks: np.ndarray) -> FaceGeometry:
    """Up direction and size of the face; ValueError for degenerate landmarks."""
    points = np.asarray(landmarks, dtype=np.float64)
    eye_r = points[RIGHT_EYE].mean(0)
    eye_l = points[LEFT_EYE].mean(0)
    across = eye_l - eye_r
    if np.linalg.norm(across) < 1e-6:
        raise ValueError("the eye landmarks coincide")
    right = across / np.linalg.norm(across)
    up = np.array([right[1], -right[0]])
    if np.dot(up, (eye_r + eye_l) / 2 - points[8]) < 0:  # mirrored landmarks
        up = -up
    size = float(np.linalg.norm(points[27] - points[8]))
    if size < 1e-6:
        raise ValueError("the nasion and chin landmarks coincide")
    widths = [np.linalg.norm(points[39] - points[36]), np.linalg.norm(points[45] - points[42])]
    return FaceGeometry(up=up, right=right, size=size, eye_width=float(max(widths)))


def _fixed(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> OpenCV fixed point with 4 fractional bits."""
    return np.round(np.asarray(points, dtype=np.float64) * 16).astype(np.int32)


def _fill(mask: np.ndarray, polygon: np.ndarray, convex: bool = False) -> None:
    """Fill a float polygon into ``mask`` with sub-pixel vertices (pixel centres at integers)."""
    pts = _fixed(polygon)
    if convex:
        pts = cv2.convexHull(pts)
    cv2.fillPoly(mask, [pts.reshape(-1, 1, 2)], 1, lineType=cv2.LINE_8, shift=4)


def _disk(radius: float) -> np.ndarray:
    r = max(1, int(round(radius)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


@dataclass
class _Gaussian:
    mean: np.ndarray
    inv: np.ndarray

    @classmethod
    def fit(cls, samples: np.ndarray) -> _Gaussian:
        cov = np.cov(samples.T) + np.eye(samples.shape[1]) * 0.25  # floor: flat patches
        return cls(samples.mean(0), np.linalg.inv(cov))

    def d2(self, x: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distances of the rows of ``x``."""
        diff = x - self.mean
        return np.einsum("ni,ij,nj->n", diff, self.inv, diff)


class SkinSegmenter(Segmenter):
    """Skin of the face from the landmarks, refined by GrabCut seeded with them.

    Options (lengths are fractions of the nasion-to-chin distance unless said otherwise):
        forehead: how far above the brows the face region reaches.
        eye_margin: dilation of the eye holes, as a fraction of the eye width.
        brow_width: width of the band cut out along each brow.
        refine: run the colour step (False: the landmark region minus the feature holes).
        iterations: GrabCut iterations.
    """

    name = "skin"
    needs_landmarks = True

    def __init__(
        self,
        forehead: float = 0.26,
        eye_margin: float = 0.05,
        brow_width: float = 0.045,
        refine: bool = True,
        iterations: int = 5,
    ) -> None:
        for name, value, hi in (
            ("forehead", forehead, 1.0),
            ("eye_margin", eye_margin, 1.0),
            ("brow_width", brow_width, 0.5),
        ):
            if not 0 <= value <= hi:
                raise ValueError(f"{name} must be in [0, {hi}], got {value}")
        if int(iterations) < 1:
            raise ValueError(f"iterations must be at least 1, got {iterations}")
        self.forehead = float(forehead)
        self.eye_margin = float(eye_margin)
        self.brow_width = float(brow_width)
        self.refine = bool(refine)
        self.iterations = int(iterations)

    # -- geometry -------------------------------------------------------------------------

    def face_region(self, shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
        """(H,W) bool: the hull of the jaw line and the brows raised to the forehead."""
        geo = face_geometry(landmarks)
        points = np.asarray(landmarks, dtype=np.float64)
        top = points[BROWS] + geo.up * (self.forehead * geo.size)
        region = np.zeros(shape, np.uint8)
        _fill(region, np.concatenate([points[JAW], top]), convex=True)
        return region.astype(bool)

    def feature_holes(self, shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
        """(H,W) bool: eyes (dilated), brow bands and the mouth interior."""
        geo = face_geometry(landmarks)
        points = np.asarray(landmarks, dtype=np.float64)
        holes = np.zeros(shape, np.uint8)
        for eye in (RIGHT_EYE, LEFT_EYE):
            eye_mask = np.zeros(shape, np.uint8)
            _fill(eye_mask, points[eye], convex=True)
            margin = self.eye_margin * geo.eye_width
            if margin >= 0.5:
                eye_mask = cv2.dilate(eye_mask, _disk(margin))
            holes |= eye_mask
        width = self.brow_width * geo.size
        if width >= 0.5:
            for brow in (RIGHT_BROW, LEFT_BROW):
                pts = _fixed(points[brow] - geo.up * width * 0.25)
                cv2.polylines(
                    holes,
                    [pts.reshape(-1, 1, 2)],
                    False,
                    1,
                    max(1, int(round(width))),
                    cv2.LINE_8,
                    shift=4,
                )
                for x, y in (pts[0], pts[-1]):  # rounded ends
                    cv2.circle(holes, (int(x), int(y)), int(width * 8), 1, -1, cv2.LINE_8, 4)
        _fill(holes, points[INNER_MOUTH])
        return holes.astype(bool)

    def core_region(self, shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
        """(H,W) bool: both cheeks and the nose, skin that is almost always visible."""
        geo = face_geometry(landmarks)
        p = np.asarray(landmarks, dtype=np.float64)
        core = np.zeros(shape, np.uint8)
        for lower_lid, jaw, nostril in ((p[[40, 41]], p[3], p[31]), (p[[46, 47]], p[13], p[35])):
            centre = 0.45 * lower_lid.mean(0) + 0.3 * jaw + 0.25 * nostril
            centre = centre + geo.up * 0.05 * geo.size
            radius = int(round(0.09 * geo.size * 16))
            cv2.circle(core, tuple(int(v) for v in _fixed(centre)), radius, 1, -1, cv2.LINE_8, 4)
        _fill(core, p[[28, 31, 33, 35]], convex=True)
        return core.astype(bool)

    # -- colour ---------------------------------------------------------------------------

    @staticmethod
    def _skin_distance(image: np.ndarray, core: np.ndarray, size: float) -> np.ndarray:
        """(h,w) squared Mahalanobis distance to a Gaussian of the core's skin in Lab."""
        smooth = cv2.GaussianBlur(image, (0, 0), max(0.5, 0.006 * size))
        lab = cv2.cvtColor(smooth.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
        lab[..., 0] *= _LIGHTNESS_WEIGHT
        features = lab.reshape(-1, 3).astype(np.float64)
        samples = features[core.ravel()]
        model = _Gaussian.fit(samples)
        for _ in range(5):  # trim what covers the core (beard, a finger, a frame)
            keep = model.d2(samples) <= _CHI2_3_975
            if keep.sum() < 20:
                break
            model = _Gaussian.fit(samples[keep])
        return model.d2(features).reshape(core.shape)

    def _grabcut(
        self,
        image: np.ndarray,
        points: np.ndarray,
        region: np.ndarray,
        holes: np.ndarray,
        core: np.ndarray,
    ) -> np.ndarray:
        """(h,w) bool: the part of ``region`` GrabCut assigns to the face's skin."""
        geo = face_geometry(points)
        d2 = self._skin_distance(image, core, geo.size)
        lips = np.zeros(region.shape, np.uint8)
        _fill(lips, points[OUTER_MOUTH])
        ys, xs = np.mgrid[0 : region.shape[0], 0 : region.shape[1]]
        brow_centre = points[BROWS].mean(0)
        above = (xs - brow_centre[0]) * geo.up[0] + (ys - brow_centre[1]) * geo.up[1] > 0
        near = cv2.dilate(region.astype(np.uint8), _disk(0.1 * geo.size)).astype(bool)

        seeds = np.full(region.shape, cv2.GC_BGD, np.uint8)
        seeds[near] = cv2.GC_PR_BGD
        seeds[region] = cv2.GC_PR_FGD
        # Colours far from the core's skin (hair, frames) start outside, so that the face's
        # colour mixture does not learn them; lips are face whatever their colour.
        seeds[region & (d2 > _CHI2_3_9999) & ~lips.astype(bool)] = cv2.GC_PR_BGD
        seeds[holes] = cv2.GC_PR_BGD
        seeds[core] = cv2.GC_FGD
        seeds[~region & above & (d2 <= _CHI2_3_975)] = cv2.GC_PR_FGD  # forehead beyond
        bgd_model = np.zeros((1, 65), np.float64)
        fgd_model = np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # GrabCut's k-means initialisation: same input, same mask
        cv2.grabCut(
            np.ascontiguousarray(image[..., ::-1]),
            seeds,
            None,
            bgd_model,
            fgd_model,
            self.iterations,
            cv2.GC_INIT_WITH_MASK,
        )
        return ((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)) & region

    # -- the segmenter --------------------------------------------------------------------

    def segment(
        self, image: np.ndarray, landmarks: np.ndarray | None = None, source: str = "<image>"
    ) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ImageError(
                f"{source}: expected an (H,W,3) uint8 RGB image, got {image.shape} {image.dtype}"
            )
        if landmarks is None:
            raise ValueError(f"{source}: the skin segmenter needs the 68 landmarks of the face")
        points = np.asarray(landmarks, dtype=np.float64)
        if points.shape != (68, 2) or not np.isfinite(points).all():
            raise ValueError(f"{source}: landmarks must be finite (68,2), got {points.shape}")
        shape = image.shape[:2]
        try:
            geo = face_geometry(points)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc
        if geo.size < _MIN_SIZE:
            raise ValueError(
                f"{source}: the face is {geo.size:.1f} px from nasion to chin, under the "
                f"{_MIN_SIZE:.0f} px a skin mask needs; are the landmarks of a resized copy?"
            )
        region = self.face_region(shape, points)
        holes = self.feature_holes(shape, points)
        if not self.refine or not region.any():
            return region & ~holes

        # Work on a crop around the face at a standard face size: GrabCut's smoothness cost
        # is per neighbouring pixel pair and its colour cost per pixel, so their balance (and
        # the result) would otherwise change with the photo's resolution.
        margin = 0.6 * geo.size
        ys, xs = np.nonzero(region)
        x0, y0 = max(0, int(xs.min() - margin)), max(0, int(ys.min() - margin))
        x1 = min(shape[1], int(xs.max() + margin) + 1)
        y1 = min(shape[0], int(ys.max() + margin) + 1)
        scale = _WORK_SIZE / geo.size
        work_size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        crop = cv2.resize(image[y0:y1, x0:x1], work_size, interpolation=shrink)
        sx, sy = crop.shape[1] / (x1 - x0), crop.shape[0] / (y1 - y0)
        work_points = (points - [x0, y0] + 0.5) * [sx, sy] - 0.5
        work_shape = crop.shape[:2]
        work_region = self.face_region(work_shape, work_points)
        work_holes = self.feature_holes(work_shape, work_points)
        core = self.core_region(work_shape, work_points) & work_region & ~work_holes
        if core.sum() < 20:  # the face is (nearly) outside the image: nothing to learn from
            return region & ~holes

        skin = self._grabcut(crop, work_points, work_region, work_holes, core) & ~work_holes
        skin = self._cleanup(skin, work_region, core, _WORK_SIZE)
        grow = cv2.INTER_LINEAR if scale < 1 else cv2.INTER_AREA
        skin = cv2.resize(skin.astype(np.float32), (x1 - x0, y1 - y0), interpolation=grow) >= 0.5
        mask = np.zeros(shape, bool)
        mask[y0:y1, x0:x1] = skin
        return mask & region & ~holes

    @staticmethod
    def _cleanup(skin: np.ndarray, region: np.ndarray, core: np.ndarray, size: float) -> np.ndarray:
        """Opening, keep large or core-connected components, fill small holes."""
        mask = cv2.morphologyEx(skin.astype(np.uint8), cv2.MORPH_OPEN, _disk(0.015 * size))
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        area = region.sum()
        keep = set(np.unique(labels[core & (mask > 0)]).tolist())
        keep |= {k for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] >= 0.03 * area}
        keep.discard(0)
        mask = np.isin(labels, sorted(keep))
        gaps = (~mask).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(gaps, connectivity=4)
        outside = set(np.unique(labels[~region]).tolist())
        for label in range(1, count):
            if label not in outside and stats[label, cv2.CC_STAT_AREA] <= 0.01 * area:
                mask |= labels == label
        return mask
