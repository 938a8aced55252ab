// The deterministic backward of every operator, written once for the CPU and
// CUDA backends: contribution lists sorted by cell.
//
// The default CUDA backward scatters each term of the gradient (a box's bin,
// sample and bilinear corner; for roi_pool a bin's winning cell) into its
// input cell with an atomic add, so the order in which a cell's terms are
// added, and with it the rounding, changes from run to run. Here the terms
// are first listed, one entry each: the cell it lands in (the key), its
// weight and the gradient it reads. A stable sort by key gathers each cell's
// terms into one segment, kept in listing order (fixed by the boxes alone);
// one thread per (channel, segment) then sums the segment and writes the
// cell. Every gradient element is written once, by one thread, in an order
// fixed by the inputs: bit-identical results whatever the thread count or
// the block scheduling.
//
// Work: the bilinear list has one entry per atomic add of one channel and is
// then summed once per channel; roi_pool's has one per atomic add. So the
// cost follows the default backward's, plus a sort of the list. (The gather
// this replaced, one thread per cell testing every box, cost cells x boxes.)
// The price is memory: about 60 bytes per entry, transient, e.g. 200 MB for
// 1024 boxes pooled 14x14 with 2x2 samples.
//
// The host side (sizes, sort, segments) is made of at:: calls, which run on
// either device; the per-item work is host-device functors that the
// backend's Exec runs for every index:
//
//   struct Exec {
//     static at::TensorOptions options();  // where the buffers live
//     template <typename F>
//     static void for_each(int64_t n, const F& f);  // f(i), 0 <= i < n, any order
//   };
//
// The CPU backend runs this too when asked for deterministic=true (its own
// backward never races), so the tests check the CUDA arithmetic without a GPU.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "entry.h"
#include "roi_geometry.h"

namespace roi_ops {

// Index of the sample of bin (ph, pw) that max mode picks: the first of the
// largest values, an invalid sample counting as 0. -1 for an empty bin.
template <typename scalar_t, typename T>
C10_HOST_DEVICE inline int max_sample_index(
    const BilinearBox<T>& b,
    const scalar_t* plane,
    int64_t height,
    int64_t width,
    int ph,
    int pw) {
  int best = -1;
  T best_value = T(0);
  for (int iy = 0; iy < b.grid_h; ++iy) {
    const AxisSample<T> ay =
        axis_sample(sample_coord(b.start_h, b.bin_h, ph, iy, b.grid_h), height);
    for (int ix = 0; ix < b.grid_w; ++ix) {
      const AxisSample<T> ax = axis_sample(
          sample_coord(b.start_w, b.bin_w, pw, ix, b.grid_w), width);
      const T v = bilinear_value(plane, width, ay, ax);
      if (best < 0 || v > best_value) {
        best = iy * b.grid_w + ix;
        best_value = v;
      }
    }
  }
  return best;
}

// Every box on the grid, and how many entries it lists: 4 corners for each
// sample of each bin (none for a box without samples).
template <typename T>
struct ListBoxes {
  RoiShape s;
  BilinearParams<T> p;
  const T* rois;
  BilinearBox<T>* boxes;
  int64_t* counts;

  C10_HOST_DEVICE void operator()(int64_t k) const {
    const BilinearBox<T> b = make_bilinear_box(
        rois + k * 5, p.spatial_scale, s.pooled_h, s.pooled_w, p.sampling_ratio, p.box_mode);
    boxes[k] = b;
    counts[k] = b.grid_h > 0 && b.grid_w > 0
        ? s.pooled_h * s.pooled_w * b.grid_h * b.grid_w * 4
        : 0;
  }
};

// The entries of one bin of one box (index k * PH * PW + bin), written from
// starts[k] on, in the order sample row, sample column, corner. An entry of
// a sample outside the map gets the key `outside` (past every cell, so it
// sorts last and is never summed).
template <typename T>
struct ListBin {
  RoiShape s;
  bool max_mode;
  const BilinearBox<T>* boxes;
  const int64_t* starts;
  int64_t* keys;     // cell: (batch * H + y) * W + x
  T* weights;        // bilinear weight, divided by the sample count (avg)
  int64_t* sources;  // where grad[k, c, bin] is, less c * PH * PW
  int* samples;      // iy * grid_w + ix (max mode only)

  C10_HOST_DEVICE void operator()(int64_t index) const {
    const int64_t bins = s.pooled_h * s.pooled_w;
    const int64_t k = index / bins, bin = index % bins;
    const BilinearBox<T> b = boxes[k];
    if (b.grid_h <= 0 || b.grid_w <= 0) {
      return;
    }
    const int ph = static_cast<int>(bin / s.pooled_w), pw = static_cast<int>(bin % s.pooled_w);
    const int64_t outside = s.batch * s.height * s.width;
    const int64_t plane = b.batch * s.height * s.width;
    const int64_t source = k * s.channels * bins + bin;
    int64_t e = starts[k] + bin * b.grid_h * b.grid_w * 4;
    for (int iy = 0; iy < b.grid_h; ++iy) {
      const AxisSample<T> ay =
          axis_sample(sample_coord(b.start_h, b.bin_h, ph, iy, b.grid_h), s.height);
      for (int ix = 0; ix < b.grid_w; ++ix) {
        const AxisSample<T> ax =
            axis_sample(sample_coord(b.start_w, b.bin_w, pw, ix, b.grid_w), s.width);
        const bool valid = ay.valid && ax.valid;
        // The corners in atomic_scatter's order; coinciding corners at the
        // border stay separate entries, as they are separate adds there.
        const int ys[4] = {ay.low, ay.low, ay.high, ay.high};
        const int xs[4] = {ax.low, ax.high, ax.low, ax.high};
        const T wys[4] = {ay.w_low, ay.w_low, ay.w_high, ay.w_high};
        const T wxs[4] = {ax.w_low, ax.w_high, ax.w_low, ax.w_high};
        for (int j = 0; j < 4; ++j, ++e) {
          keys[e] = valid ? plane + ys[j] * s.width + xs[j] : outside;
          weights[e] = max_mode ? wys[j] * wxs[j] : wys[j] * wxs[j] / b.count;
          sources[e] = source;
          if (max_mode) {
            samples[e] = iy * b.grid_w + ix;
          }
        }
      }
    }
  }
};

// Max mode: the winning sample of every (k, c, bin), indexed like grad, so
// that the sums compare ints instead of re-reading the input. input is NCHW.
template <typename scalar_t, typename T>
struct FindWinners {
  RoiShape s;
  const BilinearBox<T>* boxes;
  const scalar_t* input;
  int* winners;

  C10_HOST_DEVICE void operator()(int64_t index) const {
    const Index4 o = unravel(index, s.channels, s.pooled_h, s.pooled_w);
    const BilinearBox<T> b = boxes[o.i0];
    const scalar_t* plane = input + (b.batch * s.channels + o.i1) * s.height * s.width;
    winners[index] =
        max_sample_index(b, plane, s.height, s.width, (int)o.i2, (int)o.i3);
  }
};

// A list sorted by key, cut into segments of equal keys: entry order[j] of
// the list is the j-th in sorted order; segment i holds sorted entries
// [ends[i - 1], ends[i]) (from 0 for i = 0), all with key cells[i].
struct Segments {
  at::Tensor order, cells, ends;
  int64_t count;
};

inline Segments sort_into_segments(const at::Tensor& keys) {
  // Stable: equal keys keep their listing order, so a cell's terms are
  // always summed in the same order. (The optional is spelled out: a plain
  // `true` would pick the overload whose second argument is dim.)
  const auto [sorted, order] =
      at::sort(keys, std::optional<bool>(true), /*dim=*/0, /*descending=*/false);
  const auto [cells, inverse, counts] =
      at::unique_consecutive(sorted, /*return_inverse=*/false, /*return_counts=*/true);
  return Segments{order, cells, at::cumsum(counts, 0), cells.size(0)};
}

// One (channel, segment) of the bilinear backward: the segment's terms of
// channel c, summed in sorted order into grad_input[n, c, y, x]. Channel-major
// (index = c * segments + i), so neighbouring threads write neighbouring cells.
template <typename scalar_t, typename T>
struct SumBilinear {
  RoiShape s;
  bool max_mode;
  const scalar_t* grad;
  const int* winners;
  const int64_t* cells;
  const int64_t* ends;
  int64_t segments;
  const T* weights;  // weights, sources and samples in sorted order
  const int64_t* sources;
  const int* samples;
  T* grad_input;

  C10_HOST_DEVICE void operator()(int64_t index) const {
    const int64_t c = index / segments, i = index % segments;
    const int64_t cell = cells[i];
    const int64_t plane_size = s.height * s.width;
    if (cell >= s.batch * plane_size) {
      return;  // samples outside the map
    }
    const int64_t channel_offset = c * s.pooled_h * s.pooled_w;
    T total = T(0);
    for (int64_t j = i == 0 ? 0 : ends[i - 1]; j < ends[i]; ++j) {
      const int64_t g = sources[j] + channel_offset;
      if (max_mode && winners[g] != samples[j]) {
        continue;
      }
      total += static_cast<T>(grad[g]) * weights[j];
    }
    grad_input[(cell / plane_size * s.channels + c) * plane_size + cell % plane_size] = total;
  }
};

template <typename Exec, typename scalar_t, typename T>
void sorted_bilinear_backward(
    const RoiShape& s,
    const BilinearParams<T>& p,
    const scalar_t* grad,
    const T* rois,
    const scalar_t* input,  // NCHW, max mode only
    T* grad_input) {
  const at::TensorOptions options = Exec::options();
  const auto i64 = options.dtype(at::kLong);
  at::Tensor boxes = at::empty(
      {s.num_rois * static_cast<int64_t>(sizeof(BilinearBox<T>))}, options.dtype(at::kByte));
  auto* box_ptr = reinterpret_cast<BilinearBox<T>*>(boxes.data_ptr());
  at::Tensor counts = at::empty({s.num_rois}, i64);
  Exec::for_each(s.num_rois, ListBoxes<T>{s, p, rois, box_ptr, counts.data_ptr<int64_t>()});
  // The sample grids vary per box (adaptive sampling), so the list's length
  // is known only now: one host synchronisation on CUDA, to size it.
  const at::Tensor box_ends = at::cumsum(counts, 0);
  const int64_t total = box_ends[-1].item<int64_t>();
  if (total == 0) {
    return;
  }
  const at::Tensor starts = box_ends - counts;
  at::Tensor keys = at::empty({total}, i64);
  at::Tensor weights = at::empty({total}, options.dtype(c10::CppTypeToScalarType<T>::value));
  at::Tensor sources = at::empty({total}, i64);
  at::Tensor samples = p.max_mode ? at::empty({total}, options.dtype(at::kInt)) : at::Tensor();
  Exec::for_each(
      s.num_rois * s.pooled_h * s.pooled_w,
      ListBin<T>{s, p.max_mode, box_ptr, starts.data_ptr<int64_t>(), keys.data_ptr<int64_t>(),
                 weights.data_ptr<T>(), sources.data_ptr<int64_t>(),
                 p.max_mode ? samples.data_ptr<int>() : nullptr});

  const Segments seg = sort_into_segments(keys);
  weights = weights.index_select(0, seg.order);
  sources = sources.index_select(0, seg.order);
  at::Tensor winners;
  if (p.max_mode) {
    samples = samples.index_select(0, seg.order);
    const int64_t outputs = s.num_rois * s.channels * s.pooled_h * s.pooled_w;
    winners = at::empty({outputs}, options.dtype(at::kInt));
    Exec::for_each(
        outputs, FindWinners<scalar_t, T>{s, box_ptr, input, winners.data_ptr<int>()});
  }
  Exec::for_each(
      s.channels * seg.count,
      SumBilinear<scalar_t, T>{
          s, p.max_mode, grad, p.max_mode ? winners.data_ptr<int>() : nullptr,
          seg.cells.data_ptr<int64_t>(), seg.ends.data_ptr<int64_t>(), seg.count,
          weights.data_ptr<T>(), sources.data_ptr<int64_t>(),
          p.max_mode ? samples.data_ptr<int>() : nullptr, grad_input});
}

// roi_pool's list: one entry per (k, c, bin), indexed like grad, keyed by the
// cell of grad_input its argmax names, (n * C + c) * H * W + argmax; an empty
// bin (argmax -1) gets the key `outside`. The cell depends on the channel,
// so here the channel is part of the key rather than of the sum.
template <typename T>
struct ListPoolBins {
  RoiShape s;
  const T* rois;
  const int* argmax;
  int64_t* keys;

  C10_HOST_DEVICE void operator()(int64_t index) const {
    const int64_t plane_size = s.height * s.width;
    const int cell = argmax[index];
    if (cell < 0) {
      keys[index] = s.batch * s.channels * plane_size;
      return;
    }
    const int64_t bins = s.pooled_h * s.pooled_w;
    const int64_t k = index / (s.channels * bins), c = index / bins % s.channels;
    const int64_t n = static_cast<int64_t>(rois[k * 5]);
    keys[index] = (n * s.channels + c) * plane_size + cell;
  }
};

// One segment of roi_pool's list: the gradients of the bins that picked this
// cell, summed in sorted order.
template <typename scalar_t, typename T>
struct SumPool {
  RoiShape s;
  const scalar_t* grad;
  const int64_t* order;
  const int64_t* cells;
  const int64_t* ends;
  T* grad_input;

  C10_HOST_DEVICE void operator()(int64_t i) const {
    const int64_t cell = cells[i];
    if (cell >= s.batch * s.channels * s.height * s.width) {
      return;  // empty bins
    }
    T total = T(0);
    for (int64_t j = i == 0 ? 0 : ends[i - 1]; j < ends[i]; ++j) {
      total += static_cast<T>(grad[order[j]]);
    }
    grad_input[cell] = total;
  }
};

template <typename Exec, typename scalar_t, typename T>
void sorted_pool_backward(
    const RoiShape& s,
    const scalar_t* grad,
    const T* rois,
    const int* argmax,
    T* grad_input) {
  const int64_t entries = s.num_rois * s.channels * s.pooled_h * s.pooled_w;
  at::Tensor keys = at::empty({entries}, Exec::options().dtype(at::kLong));
  Exec::for_each(entries, ListPoolBins<T>{s, rois, argmax, keys.data_ptr<int64_t>()});
  const Segments seg = sort_into_segments(keys);
  Exec::for_each(
      seg.count,
      SumPool<scalar_t, T>{s, grad, seg.order.data_ptr<int64_t>(),
                           seg.cells.data_ptr<int64_t>(), seg.ends.data_ptr<int64_t>(),
                           grad_input});
}

} // namespace roi_ops
