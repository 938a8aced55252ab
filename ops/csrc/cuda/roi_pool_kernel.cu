// CUDA kernels of roi_pool: forward with argmax, backward with atomics
// (default) or, under torch.use_deterministic_algorithms(True), the sorted
// backward of roi_sorted.h. Runs on the current stream.
#include <ATen/cuda/Atomic.cuh>

#include "../entry.h"
#include "../roi_sorted.h"
#include "launch.cuh"

namespace roi_ops {
namespace {

template <typename scalar_t, typename T>
__global__ void forward_kernel(
    const RoiShape s,
    T spatial_scale,
    const scalar_t* __restrict__ input,
    const T* __restrict__ rois,
    scalar_t* __restrict__ output,
    int* __restrict__ argmax) {
  ROI_OPS_GRID_STRIDE_LOOP(index, s.num_rois * s.channels * s.pooled_h * s.pooled_w) {
    const Index4 o = unravel(index, s.channels, s.pooled_h, s.pooled_w);
    const PoolBox<T> b = make_pool_box(rois + o.i0 * 5, spatial_scale, s.pooled_h, s.pooled_w);
    int h0, h1, w0, w1;
    pool_bin_range(b.start_h, b.bin_h, (int)o.i2, s.height, &h0, &h1);
    pool_bin_range(b.start_w, b.bin_w, (int)o.i3, s.width, &w0, &w1);
    const scalar_t* plane = input + (b.batch * s.channels + o.i1) * s.height * s.width;
    // An empty bin (wholly outside the map) gives 0 and no gradient.
    T best = T(0);
    int best_index = -1;
    for (int h = h0; h < h1; ++h) {
      for (int w = w0; w < w1; ++w) {
        const T v = static_cast<T>(plane[h * s.width + w]);
        if (best_index < 0 || v > best) {
          best = v;
          best_index = static_cast<int>(h * s.width + w);
        }
      }
    }
    output[index] = static_cast<scalar_t>(best);
    argmax[index] = best_index;
  }
}

template <typename scalar_t, typename T>
__global__ void backward_atomic_kernel(
    const RoiShape s,
    const scalar_t* __restrict__ grad,
    const T* __restrict__ rois,
    const int* __restrict__ argmax,
    T* __restrict__ grad_input) {
  ROI_OPS_GRID_STRIDE_LOOP(index, s.num_rois * s.channels * s.pooled_h * s.pooled_w) {
    const int cell = argmax[index];
    if (cell < 0) {
      continue;
    }
    const Index4 o = unravel(index, s.channels, s.pooled_h, s.pooled_w);
    const int64_t n = static_cast<int64_t>(rois[o.i0 * 5]);
    gpuAtomicAdd(
        grad_input + (n * s.channels + o.i1) * s.height * s.width + cell,
        static_cast<T>(grad[index]));
  }
}

struct CudaPool {
  static constexpr auto kInputLayout = at::MemoryFormat::Contiguous;

  template <typename scalar_t, typename T>
  static void forward(
      const RoiShape& s,
      T spatial_scale,
      const scalar_t* input,
      const T* rois,
      scalar_t* output,
      int* argmax) {
    const int64_t total = s.num_rois * s.channels * s.pooled_h * s.pooled_w;
    forward_kernel<scalar_t, T>
        <<<blocks_for(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            s, spatial_scale, input, rois, output, argmax);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <typename scalar_t, typename T>
  static void backward(
      const RoiShape& s,
      T spatial_scale,
      const scalar_t* grad,
      const T* rois,
      const int* argmax,
      bool deterministic,
      T* grad_input) {
    if (deterministic) {
      sorted_pool_backward<CudaExec>(s, grad, rois, argmax, grad_input);
      return;
    }
    const int64_t total = s.num_rois * s.channels * s.pooled_h * s.pooled_w;
    backward_atomic_kernel<scalar_t, T>
        <<<blocks_for(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            s, grad, rois, argmax, grad_input);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

} // namespace

TORCH_LIBRARY_IMPL(roi_ops, CUDA, m) {
  register_pool<CudaPool>(m);
}

} // namespace roi_ops
