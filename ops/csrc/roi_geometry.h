// Geometry shared by the CPU and CUDA kernels: where a box lies on the feature
// grid, how it is split into bins, where the sample points of a bin are and
// which feature cells they read. Every function here is host-device, so both
// backends compute bit-identical coordinates and weights.
//
// The arithmetic follows torchvision's kernels operation by operation (same
// products, same casts), which is what makes the float results agree with
// torchvision to rounding.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

namespace roi_ops {

// Sizes of one operator call: K boxes pooled from an [N, C, H, W] map into
// [K, C, PH, PW].
struct RoiShape {
  int64_t num_rois, batch, channels, height, width, pooled_h, pooled_w;
};

// A flat index into a 4-D contiguous tensor, split into its coordinates.
struct Index4 {
  int64_t i0, i1, i2, i3;
};

C10_HOST_DEVICE inline Index4 unravel(int64_t index, int64_t d1, int64_t d2, int64_t d3) {
  Index4 r;
  r.i3 = index % d3;
  index /= d3;
  r.i2 = index % d2;
  index /= d2;
  r.i1 = index % d1;
  r.i0 = index / d1;
  return r;
}

// How a bilinear op places a box on the feature grid.
enum BoxMode : int64_t {
  // roi_align(aligned=False): corners scaled, size forced to at least 1 cell.
  kAlignLegacy = 0,
  // roi_align(aligned=True): corners scaled and shifted by half a cell.
  kAlignHalfPixel = 1,
  // roi_warp: corners scaled and rounded to cells (as roi_pool does), then
  // sampled as kAlignLegacy.
  kWarp = 2,
};

// A box on the feature grid, split into bins of grid_h x grid_w samples.
template <typename T>
struct BilinearBox {
  int64_t batch;
  T start_h, start_w;  // top-left corner in feature cells
  T bin_h, bin_w;      // bin size in feature cells
  int grid_h, grid_w;  // sample points per bin along each axis
  T count;             // divisor of the average: max(grid_h * grid_w, 1)
};

template <typename T>
C10_HOST_DEVICE inline BilinearBox<T> make_bilinear_box(
    const T* roi,
    T spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w,
    int64_t sampling_ratio,
    int64_t box_mode) {
  BilinearBox<T> b;
  b.batch = static_cast<int64_t>(roi[0]);
  T x1 = roi[1] * spatial_scale;
  T y1 = roi[2] * spatial_scale;
  T x2 = roi[3] * spatial_scale;
  T y2 = roi[4] * spatial_scale;
  if (box_mode == kWarp) {
    x1 = round(x1);
    y1 = round(y1);
    x2 = round(x2);
    y2 = round(y2);
  }
  const T offset = box_mode == kAlignHalfPixel ? T(0.5) : T(0);
  b.start_w = x1 - offset;
  b.start_h = y1 - offset;
  T roi_w = (x2 - offset) - b.start_w;
  T roi_h = (y2 - offset) - b.start_h;
  if (box_mode != kAlignHalfPixel) {
    roi_w = roi_w > T(1) ? roi_w : T(1);
    roi_h = roi_h > T(1) ? roi_h : T(1);
  }
  b.bin_h = roi_h / static_cast<T>(pooled_h);
  b.bin_w = roi_w / static_cast<T>(pooled_w);
  b.grid_h = sampling_ratio > 0
      ? static_cast<int>(sampling_ratio)
      : static_cast<int>(ceil(roi_h / static_cast<T>(pooled_h)));
  b.grid_w = sampling_ratio > 0
      ? static_cast<int>(sampling_ratio)
      : static_cast<int>(ceil(roi_w / static_cast<T>(pooled_w)));
  const int n = b.grid_h * b.grid_w;
  b.count = static_cast<T>(n > 1 ? n : 1);
  return b;
}

// Coordinate of sample i (of `grid`) in bin p, along one axis.
template <typename T>
C10_HOST_DEVICE inline T sample_coord(T start, T bin, int p, int i, int grid) {
  return start + p * bin +
      static_cast<T>(i + .5f) * bin / static_cast<T>(grid);
}

// The two cells a sample reads along one axis, with their weights. A sample
// further than one cell outside the map, or on an axis of no cells, reads
// nothing (valid = false); one within a cell of the border is clamped onto it.
template <typename T>
struct AxisSample {
  int low, high;
  T w_low, w_high;
  bool valid;
};

template <typename T>
C10_HOST_DEVICE inline AxisSample<T> axis_sample(T v, int64_t size) {
  AxisSample<T> a;
  // Written as !(in range) so that NaN takes this branch. An axis of size 0
  // has no cell to read (the checks refuse it; this keeps the read in bounds).
  if (size <= 0 || !(v >= T(-1) && v <= static_cast<T>(size))) {
    a.low = a.high = 0;
    a.w_low = a.w_high = T(0);
    a.valid = false;
    return a;
  }
  if (v <= T(0)) {
    v = T(0);
  }
  a.low = static_cast<int>(v);
  if (a.low >= size - 1) {
    a.low = a.high = static_cast<int>(size - 1);
    v = static_cast<T>(a.low);
  } else {
    a.high = a.low + 1;
  }
  a.w_high = v - static_cast<T>(a.low);
  a.w_low = T(1) - a.w_high;
  a.valid = true;
  return a;
}

// Bilinear value of one sample on a [H, W] plane (zero when invalid).
template <typename scalar_t, typename T>
C10_HOST_DEVICE inline T bilinear_value(
    const scalar_t* plane,
    int64_t width,
    const AxisSample<T>& ay,
    const AxisSample<T>& ax) {
  if (!(ay.valid && ax.valid)) {
    return T(0);
  }
  const scalar_t* lo = plane + ay.low * width;
  const scalar_t* hi = plane + ay.high * width;
  return ay.w_low * ax.w_low * static_cast<T>(lo[ax.low]) +
      ay.w_low * ax.w_high * static_cast<T>(lo[ax.high]) +
      ay.w_high * ax.w_low * static_cast<T>(hi[ax.low]) +
      ay.w_high * ax.w_high * static_cast<T>(hi[ax.high]);
}

// Value of one bin: the average (or max) of its grid_h x grid_w samples.
// sample_y(iy) and sample_x(ix) give the AxisSample of each sample row and
// column, precomputed (CPU) or computed on the spot (CUDA).
template <typename scalar_t, typename T, typename SampleY, typename SampleX>
C10_HOST_DEVICE inline T bin_value(
    const scalar_t* plane,
    int64_t width,
    const BilinearBox<T>& b,
    bool max_mode,
    const SampleY& sample_y,
    const SampleX& sample_x) {
  T acc = T(0);
  bool first = true;
  for (int iy = 0; iy < b.grid_h; ++iy) {
    const AxisSample<T> ay = sample_y(iy);
    for (int ix = 0; ix < b.grid_w; ++ix) {
      const T v = bilinear_value(plane, width, ay, sample_x(ix));
      if (!max_mode) {
        acc += v;
      } else if (first || v > acc) {
        acc = v;
      }
      first = false;
    }
  }
  return max_mode ? acc : acc / b.count;
}

// roi_pool's box: corners rounded to cells, at least one cell wide.
template <typename T>
struct PoolBox {
  int64_t batch;
  int start_h, start_w;
  T bin_h, bin_w;
};

// round() to an int cell index; absurdly far coordinates are clamped so the
// cast stays defined (they lie off the map either way).
template <typename T>
C10_HOST_DEVICE inline int round_to_cell(T v) {
  const T limit = T(1 << 29);
  v = round(v);
  return static_cast<int>(v < -limit ? -limit : (v > limit ? limit : v));
}

template <typename T>
C10_HOST_DEVICE inline PoolBox<T> make_pool_box(
    const T* roi,
    T spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w) {
  PoolBox<T> b;
  b.batch = static_cast<int64_t>(roi[0]);
  b.start_w = round_to_cell(roi[1] * spatial_scale);
  b.start_h = round_to_cell(roi[2] * spatial_scale);
  const int end_w = round_to_cell(roi[3] * spatial_scale);
  const int end_h = round_to_cell(roi[4] * spatial_scale);
  const int roi_w = end_w - b.start_w + 1 > 1 ? end_w - b.start_w + 1 : 1;
  const int roi_h = end_h - b.start_h + 1 > 1 ? end_h - b.start_h + 1 : 1;
  b.bin_h = static_cast<T>(roi_h) / static_cast<T>(pooled_h);
  b.bin_w = static_cast<T>(roi_w) / static_cast<T>(pooled_w);
  return b;
}

C10_HOST_DEVICE inline int clamp_int(int v, int lo, int hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// Cells [*begin, *end) of bin p along one axis, clipped to the map.
template <typename T>
C10_HOST_DEVICE inline void pool_bin_range(
    int start,
    T bin,
    int p,
    int64_t size,
    int* begin,
    int* end) {
  const int b = static_cast<int>(floor(static_cast<T>(p) * bin));
  const int e = static_cast<int>(ceil(static_cast<T>(p + 1) * bin));
  *begin = clamp_int(b + start, 0, static_cast<int>(size));
  *end = clamp_int(e + start, 0, static_cast<int>(size));
}

} // namespace roi_ops
