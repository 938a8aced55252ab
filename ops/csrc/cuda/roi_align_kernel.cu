// CUDA kernels of the bilinear operators, roi_align and roi_warp: forward,
// backward with atomics (default) and, under
// torch.use_deterministic_algorithms(True), the sorted backward of
// roi_sorted.h. Half and bfloat16 inputs are read and written in their own
// type and accumulated in float32. Every kernel runs on the current stream.
#include <ATen/cuda/Atomic.cuh>

#include "../entry.h"
#include "../roi_sorted.h"
#include "launch.cuh"

namespace roi_ops {
namespace {

// Sample rows / columns of bin (ph, pw), computed on the spot.
template <typename T>
struct SampleRow {
  const BilinearBox<T>& b;
  int ph;
  int64_t height;
  C10_HOST_DEVICE AxisSample<T> operator()(int iy) const {
    return axis_sample(sample_coord(b.start_h, b.bin_h, ph, iy, b.grid_h), height);
  }
};

template <typename T>
struct SampleCol {
  const BilinearBox<T>& b;
  int pw;
  int64_t width;
  C10_HOST_DEVICE AxisSample<T> operator()(int ix) const {
    return axis_sample(sample_coord(b.start_w, b.bin_w, pw, ix, b.grid_w), width);
  }
};

template <typename scalar_t, typename T>
__global__ void forward_kernel(
    const RoiShape s,
    const BilinearParams<T> p,
    const scalar_t* __restrict__ input,
    const T* __restrict__ rois,
    scalar_t* __restrict__ output) {
  ROI_OPS_GRID_STRIDE_LOOP(index, s.num_rois * s.channels * s.pooled_h * s.pooled_w) {
    const Index4 o = unravel(index, s.channels, s.pooled_h, s.pooled_w);
    const BilinearBox<T> b = make_bilinear_box(
        rois + o.i0 * 5, p.spatial_scale, s.pooled_h, s.pooled_w, p.sampling_ratio,
        p.box_mode);
    const scalar_t* plane = input + (b.batch * s.channels + o.i1) * s.height * s.width;
    output[index] = static_cast<scalar_t>(bin_value(
        plane, s.width, b, p.max_mode, SampleRow<T>{b, (int)o.i2, s.height},
        SampleCol<T>{b, (int)o.i3, s.width}));
  }
}

template <typename T>
__device__ inline void atomic_scatter(
    T* plane,
    int64_t width,
    const AxisSample<T>& ay,
    const AxisSample<T>& ax,
    T g) {
  if (!(ay.valid && ax.valid)) {
    return;
  }
  gpuAtomicAdd(plane + ay.low * width + ax.low, g * ay.w_low * ax.w_low);
  gpuAtomicAdd(plane + ay.low * width + ax.high, g * ay.w_low * ax.w_high);
  gpuAtomicAdd(plane + ay.high * width + ax.low, g * ay.w_high * ax.w_low);
  gpuAtomicAdd(plane + ay.high * width + ax.high, g * ay.w_high * ax.w_high);
}

template <typename scalar_t, typename T>
__global__ void backward_atomic_kernel(
    const RoiShape s,
    const BilinearParams<T> p,
    const scalar_t* __restrict__ grad,
    const T* __restrict__ rois,
    const scalar_t* __restrict__ input,
    T* __restrict__ grad_input) {
  ROI_OPS_GRID_STRIDE_LOOP(index, s.num_rois * s.channels * s.pooled_h * s.pooled_w) {
    const Index4 o = unravel(index, s.channels, s.pooled_h, s.pooled_w);
    const BilinearBox<T> b = make_bilinear_box(
        rois + o.i0 * 5, p.spatial_scale, s.pooled_h, s.pooled_w, p.sampling_ratio,
        p.box_mode);
    const SampleRow<T> row{b, (int)o.i2, s.height};
    const SampleCol<T> col{b, (int)o.i3, s.width};
    const int64_t plane_offset = (b.batch * s.channels + o.i1) * s.height * s.width;
    T* grad_plane = grad_input + plane_offset;
    const T g = static_cast<T>(grad[index]);
    if (p.max_mode) {
      const int win = max_sample_index(
          b, input + plane_offset, s.height, s.width, (int)o.i2, (int)o.i3);
      if (win >= 0) {
        atomic_scatter(grad_plane, s.width, row(win / b.grid_w), col(win % b.grid_w), g);
      }
      continue;
    }
    const T g_sample = g / b.count;
    for (int iy = 0; iy < b.grid_h; ++iy) {
      const AxisSample<T> ay = row(iy);
      for (int ix = 0; ix < b.grid_w; ++ix) {
        atomic_scatter(grad_plane, s.width, ay, col(ix), g_sample);
      }
    }
  }
}

struct CudaBilinear {
  static constexpr auto kInputLayout = at::MemoryFormat::Contiguous;

  template <typename scalar_t, typename T>
  static void forward(
      const RoiShape& s,
      const BilinearParams<T>& p,
      const scalar_t* input,
      const T* rois,
      scalar_t* output) {
    const int64_t total = s.num_rois * s.channels * s.pooled_h * s.pooled_w;
    forward_kernel<scalar_t, T>
        <<<blocks_for(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            s, p, input, rois, output);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <typename scalar_t, typename T>
  static void backward(
      const RoiShape& s,
      const BilinearParams<T>& p,
      const scalar_t* grad,
      const T* rois,
      const scalar_t* input,
      bool deterministic,
      T* grad_input) {
    if (deterministic) {
      sorted_bilinear_backward<CudaExec>(s, p, grad, rois, input, grad_input);
      return;
    }
    const int64_t total = s.num_rois * s.channels * s.pooled_h * s.pooled_w;
    backward_atomic_kernel<scalar_t, T>
        <<<blocks_for(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            s, p, grad, rois, input, grad_input);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

} // namespace

TORCH_LIBRARY_IMPL(roi_ops, CUDA, m) {
  register_bilinear<CudaBilinear>(m);
}

} // namespace roi_ops
