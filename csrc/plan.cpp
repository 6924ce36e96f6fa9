// The eager fast path of Optimizer.step(): the optimizer's buffers are handed over once (per parameter
// set) and kept here, so a step is one Python->C++ call that gathers gradients, checks them, and runs
// every group. CPU groups go straight to the kernel; other devices go through the registered op, so the
// eager and traced paths share the implementation below the op.
#include "plan.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <unordered_map>

#include "contract.h"
#include "op_signatures.h"
#include "optim_cpu.h"
#include "quant8.h"

namespace lrfused {
namespace {

// What a parameter was when the plan was built: pointer, dtype, device, sizes and strides. Kept compact
// (32 bytes plus 16 per dimension in one shared array), since a step compares every parameter and
// 10 000 of them must stay in cache; every field read is in the TensorImpl the step reads anyway.
class ParamShapes {
 public:
  void add(const at::Tensor& p) {
    Entry e;
    e.data = p.data_ptr();
    e.numel = p.numel();
    e.dim = static_cast<int32_t>(p.dim());
    e.dtype = static_cast<int16_t>(p.scalar_type());
    e.device = static_cast<int16_t>(p.device().is_cpu() ? -1 : p.device().index());
    e.layout = static_cast<uint32_t>(layout_.size());
    layout_.insert(layout_.end(), p.sizes().begin(), p.sizes().end());
    layout_.insert(layout_.end(), p.strides().begin(), p.strides().end());
    entries_.push_back(e);
  }
  bool same(size_t i, const at::Tensor& p) const {
    const Entry& e = entries_[i];
    if (p.data_ptr() != e.data || p.numel() != e.numel || p.dim() != e.dim ||
        static_cast<int16_t>(p.scalar_type()) != e.dtype ||
        static_cast<int16_t>(p.device().is_cpu() ? -1 : p.device().index()) != e.device) {
      return false;
    }
    const int64_t* l = layout_.data() + e.layout;
    const c10::IntArrayRef sizes = p.sizes(), strides = p.strides();
    for (int32_t d = 0; d < e.dim; ++d)
      if (sizes[d] != l[d] || strides[d] != l[e.dim + d]) return false;
    return true;
  }
  void reserve(size_t n) { entries_.reserve(n); }

 private:
  struct Entry {
    const void* data;
    int64_t numel;
    int32_t dim;
    int16_t dtype;
    int16_t device;  // -1 for the CPU; one plan bucket never mixes device types
    uint32_t layout;
    uint32_t unused;
  };
  std::vector<Entry> entries_;
  std::vector<int64_t> layout_;  // per parameter: sizes, then strides
};

struct Bucket {
  GroupStep step;  // found_inf/grad_scale/grad_factor filled per call
  std::vector<at::Tensor> params, state1, state2, state3, steps;
  std::vector<at::Tensor> masters;   // empty, or an fp32 master per parameter
  std::vector<int64_t> sr_streams;   // empty, or each parameter's stochastic-rounding stream
  std::vector<at::Tensor> absmax[2]; // 8-bit state: each parameter's block scales of state1 / state2
  at::ScalarType param_type;
  at::ScalarType state_type;
  bool on_cpu = true;
  // CPU: kernel views built once. The state and step buffers belong to the optimizer and are replaced
  // only through load_state_dict (which rebuilds the plan), so their pointers are cached; the param and
  // grad pointers are read afresh every step. Skipping the state tensors' TensorImpls keeps a step over
  // 10 000 small tensors from being a chain of cache misses.
  std::vector<cpu::TensorRef> cached;
  std::vector<uint8_t> staged;  // param or state not walkable flat: built per step with copies
  // What each parameter was when the plan was built. A parameter that changed since (a .data swap, a
  // dtype/device/memory-format move) makes step() return without touching anything, so that the plan
  // is rebuilt (and checked against the optimizer state) before any kernel sees stale sizes or layouts.
  ParamShapes built;
  // Per-step scratch, reused.
  std::vector<at::Tensor> grads;          // non-CPU buckets
  std::vector<cpu::TensorRef> refs;       // CPU buckets: this step's views
  std::vector<int64_t> staged_now;        // indices into params that go through make_tensor_ref
  std::vector<cpu::TensorRef> gathered;   // per param, valid where status is FLAT
  std::vector<uint8_t> status;            // GatherStatus per param
};

class Plan {
 public:
  // params/state lists of one (group, device, dtype) bucket; state lists may be empty (unused slot), as
  // may masters (no master copies) and sr_streams (without FLAG_STOCHASTIC_ROUNDING).
  void add_bucket(std::vector<at::Tensor> params, std::vector<at::Tensor> state1, std::vector<at::Tensor> state2,
                  std::vector<at::Tensor> state3, std::vector<at::Tensor> steps, at::Tensor sched_state,
                  at::Tensor program, int64_t group_index, int64_t optimizer, int64_t flags,
                  std::vector<double> hyper, std::vector<at::Tensor> masters, std::vector<int64_t> sr_streams,
                  int64_t sr_seed, std::vector<at::Tensor> absmax1, std::vector<at::Tensor> absmax2) {
    Bucket b;
    b.step.sched_state = std::move(sched_state);
    b.step.program = std::move(program);
    b.step.group_index = group_index;
    b.step.optimizer = optimizer;
    b.step.flags = flags;
    b.step.hyper = std::move(hyper);
    b.step.sr_seed = static_cast<uint64_t>(sr_seed);
    check_group_step(b.step);
    TORCH_CHECK(!params.empty(), "lrfused: a plan bucket needs at least one param");
    TORCH_CHECK(masters.empty() || masters.size() == params.size(), "lrfused: a plan bucket's masters must be "
                "empty or one per param");
    for (size_t i = 0; i < masters.size(); ++i) check_master(params[i], masters[i], i);
    const bool stochastic = (flags & FLAG_STOCHASTIC_ROUNDING) != 0;
    TORCH_CHECK(sr_streams.size() == (stochastic ? params.size() : 0), "lrfused: a plan bucket needs one "
                "stochastic-rounding stream per param with the flag, none without");
    b.param_type = real_view(params[0]).scalar_type();
    b.state_type = state1.empty() ? b.param_type : real_view(state1[0]).scalar_type();
    b.on_cpu = params[0].device().is_cpu();
    check_dtype_pair(b.param_type, b.state_type);
    const c10::Device device = params[0].device();
    auto check_on_device = [&](const std::vector<at::Tensor>& list, const char* what) {
      for (const at::Tensor& t : list)
        TORCH_CHECK(t.device() == device, "lrfused: a parameter's ", what, " is on ", t.device(),
                    " but the parameter is on ", device);
    };
    check_on_device(params, "bucket");
    check_on_device(state1, "state");
    check_on_device(state2, "state");
    check_on_device(state3, "state");
    check_on_device(steps, "step");
    b.params = std::move(params);
    b.built.reserve(b.params.size());
    for (const at::Tensor& p : b.params) b.built.add(p);
    b.state1 = std::move(state1);
    b.state2 = std::move(state2);
    b.state3 = std::move(state3);
    b.steps = std::move(steps);
    b.masters = std::move(masters);
    b.sr_streams = std::move(sr_streams);
    b.absmax[0] = std::move(absmax1);
    b.absmax[1] = std::move(absmax2);
    check_quantized_bucket(b);
    if (b.on_cpu) cache_views(b);
    add_sched_state(b.step.sched_state);
    buckets_.push_back(std::move(b));
  }

  // A per-device schedule state that step() advances even if no bucket uses it (no gradients yet).
  void add_sched_state(at::Tensor state) {
    check_sched_state(state);
    if (std::find_if(sched_states_.begin(), sched_states_.end(),
                     [&](const at::Tensor& t) { return t.is_same(state); }) == sched_states_.end()) {
      sched_states_.push_back(std::move(state));
    }
  }

  // Returns false, having changed nothing, when the plan is out of date: a parameter without optimizer
  // state now has a gradient, or a parameter changed since the plan was built (the caller rebuilds it,
  // creating or checking state). Raises, having changed nothing, on an invalid gradient.
  // hypers: each group's [lr, momentum|beta1, dampening|beta2, eps, weight_decay] for this step, so that
  // a scheduler or a user editing them between steps costs nothing.
  // max_grad_norm > 0 clips: the global L2 norm of the gradients goes to clip_buffer[0] and the factor
  // min(1, max_grad_norm / (norm + kClipEps)) (torch.nn.utils.clip_grad_norm_) to clip_buffer[1], which
  // the update kernels multiply every gradient by.
  bool step(const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& found_inf,
            double max_grad_norm, const std::optional<at::Tensor>& clip_buffer,
            const std::vector<at::Tensor>& stateless_params, const std::vector<std::vector<double>>& hypers) {
    for (const at::Tensor& p : stateless_params) {
      if (p.grad().defined()) return false;
    }
    const bool write_grads = grad_scale.has_value();
    // Gather and check every gradient before any bucket runs.
    for (Bucket& b : buckets_) {
      b.grads.clear();
      b.refs.clear();
      b.staged_now.clear();
      if (b.on_cpu) {
        if (!gather_cpu(b, write_grads)) return false;
        continue;
      }
      for (size_t i = 0; i < b.params.size(); ++i) {
        const at::Tensor& p = b.params[i];
        if (!b.built.same(i, p)) return false;
        const at::Tensor& g = p.grad();
        if (!g.defined()) continue;
        check_grad(p, g, write_grads);
        b.grads.push_back(g);
      }
    }
    for (Bucket& b : buckets_) {
      TORCH_CHECK(b.step.group_index < static_cast<int64_t>(hypers.size()) &&
                      hypers[b.step.group_index].size() == HYPER_COUNT,
                  "lrfused: Plan.step needs ", HYPER_COUNT, " hyperparameters for every group");
      b.step.hyper = hypers[b.step.group_index];
    }
    std::optional<at::Tensor> grad_factor;
    if (max_grad_norm > 0.0) {
      TORCH_CHECK(clip_buffer.has_value() && clip_buffer->numel() == 2 && clip_buffer->is_floating_point(),
                  "lrfused: clipping needs a 2-element floating-point clip_buffer");
      compute_clip_factor(grad_scale, max_grad_norm, *clip_buffer);
      grad_factor = clip_buffer->narrow(0, 1, 1);
    }
    for (Bucket& b : buckets_) {
      b.step.grad_scale = grad_scale;
      b.step.found_inf = found_inf;
      b.step.grad_factor = grad_factor;
      if (b.on_cpu) {
        run_cpu(b);
      } else {
        run_op(b);
      }
    }
    for (const at::Tensor& state : sched_states_) {
      if (state.device().is_cpu()) {
        cpu_advance(state, found_inf);
      } else {
        std::optional<at::Tensor> fi = found_inf ? std::optional<at::Tensor>(found_inf->to(state.device(), true))
                                                 : std::nullopt;
        LRF_OP(advance_).call(state, fi);
      }
    }
    return true;
  }

  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }

 private:
  // check_step_request's 8-bit checks, on the bucket's lists.
  static void check_quantized_bucket(const Bucket& b) {
    const bool adam = b.step.optimizer == OPT_ADAM;
    const at::TensorList states[2] = {b.state1, b.state2};
    const at::TensorList absmax[2] = {b.absmax[0], b.absmax[1]};
    check_8bit_state(b.params, states, absmax, b.state_type, adam, adam && (b.step.flags & FLAG_AMSGRAD) != 0);
  }

  void compute_clip_factor(const std::optional<at::Tensor>& grad_scale, double max_norm, const at::Tensor& buffer) {
    const c10::Device device = buffer.device();
    for (const Bucket& b : buckets_) {
      TORCH_CHECK(b.params.empty() || b.params[0].device() == device, "lrfused: max_grad_norm needs every "
                  "parameter on one device (", device, "), found one on ", b.params[0].device());
    }
    if (device.is_cpu()) {
      const double inv_scale = grad_scale ? 1.0 / read_cpu_scalar(*grad_scale, "grad_scale") : 1.0;
      double sum_sq = 0.0;
      for (Bucket& b : buckets_) {
        sum_sq += cpu::grad_sum_of_squares(b.refs.data(), static_cast<int64_t>(b.refs.size()),
                                           kernel_dtype(b.param_type, "params"), inv_scale);
        for (int64_t i : b.staged_now) {
          const at::Tensor g = real_view(b.params[i].grad()).to(at::kDouble) * inv_scale;
          sum_sq += g.square().sum().item<double>();
        }
      }
      const double norm = std::sqrt(sum_sq);
      TORCH_CHECK(buffer.scalar_type() == at::kDouble, "lrfused: the CPU clip_buffer must be float64");
      double* out = buffer.data_ptr<double>();
      out[0] = norm;
      // torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1
      out[1] = std::min(1.0, max_norm / (norm + kClipEps));
      return;
    }
    at::Tensor sum_sq;
    for (Bucket& b : buckets_) {
      if (b.grads.empty()) continue;
      at::Tensor part = LRF_OP(grad_sq_norm).call(b.grads, grad_scale);
      sum_sq = sum_sq.defined() ? sum_sq + part : part;
    }
    if (!sum_sq.defined()) {
      buffer.fill_(0.0);
      return;
    }
    const at::Tensor norm = sum_sq.sqrt();
    buffer.narrow(0, 0, 1).copy_(norm.reshape({1}));
    buffer.narrow(0, 1, 1).copy_((max_norm / (norm + kClipEps)).clamp_max(1.0).reshape({1}));
  }

  enum GatherStatus : uint8_t { NO_GRAD = 0, FLAT = 1, STAGED = 2, INVALID = 3, CHANGED = 4 };

  // Classifies one parameter's gradient for the CPU kernel; fills ref when it can be walked flat.
  static GatherStatus classify(const Bucket& b, size_t i, cpu::TensorRef& ref) {
    // The TensorImpls are scattered over the heap: fetch a few parameters ahead.
    if (i + 8 < b.params.size()) __builtin_prefetch(b.params[i + 8].unsafeGetTensorImpl(), 0, 3);
    const at::Tensor& p = b.params[i];
    if (!b.built.same(i, p)) return CHANGED;
    const at::Tensor& g = p.grad();
    if (!g.defined()) return NO_GRAD;
    if (g.is_sparse() || g.scalar_type() != p.scalar_type() || g.device() != p.device() || g.sizes() != p.sizes()) {
      return INVALID;
    }
    if (b.staged[i] || !g.is_non_overlapping_and_dense() || (g.numel() > 1 && g.strides() != p.strides())) {
      return STAGED;
    }
    ref = b.cached[i];
    ref.param = p.data_ptr();
    ref.grad = g.data_ptr();
    return FLAT;
  }

  // Reading 10 000 gradients is a chain of cache misses per tensor; above this many parameters the
  // threads split it. Errors are found first and raised afterwards, outside the parallel region.
  static constexpr size_t kParallelGatherMin = 2048;

  // False when a parameter changed since the plan was built (nothing gathered is used then).
  static bool gather_cpu(Bucket& b, bool write_grads) {
    const size_t n = b.params.size();
    b.gathered.resize(n);
    b.status.resize(n);
    if (n >= kParallelGatherMin) {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) b.status[i] = classify(b, i, b.gathered[i]);
    } else {
      for (size_t i = 0; i < n; ++i) b.status[i] = classify(b, i, b.gathered[i]);
    }
    for (size_t i = 0; i < n; ++i)
      if (b.status[i] == CHANGED) return false;
    for (size_t i = 0; i < n; ++i) {
      switch (b.status[i]) {
        case NO_GRAD: break;
        case FLAT: b.refs.push_back(b.gathered[i]); break;
        case STAGED:
          check_grad(b.params[i], b.params[i].grad(), write_grads);  // an overlapping grad cannot take the write-back
          b.staged_now.push_back(static_cast<int64_t>(i));
          break;
        case INVALID: check_grad(b.params[i], b.params[i].grad(), write_grads); break;  // raises with the details
        default: break;
      }
    }
    return true;
  }

  static void cache_views(Bucket& b) {
    const size_t n = b.params.size();
    b.cached.assign(n, cpu::TensorRef{});
    b.staged.assign(n, 0);
    for (size_t i = 0; i < n; ++i) {
      const at::Tensor& p = b.params[i];
      bool flat = p.is_non_overlapping_and_dense();
      auto state_ptr = [&](const std::vector<at::Tensor>& list) -> void* {
        if (list.empty()) return nullptr;
        flat = flat && same_walk_order(list[i], p);
        return list[i].data_ptr();
      };
      cpu::TensorRef& r = b.cached[i];
      r.s1 = state_ptr(b.state1);
      r.s2 = state_ptr(b.state2);
      r.s3 = state_ptr(b.state3);
      r.step = b.steps[i].data_ptr<float>();
      r.numel = p.is_complex() ? 2 * p.numel() : p.numel();  // complex: the real view's elements
      if (!b.masters.empty()) {
        flat = flat && same_walk_order(b.masters[i], p);
        r.master = b.masters[i].data_ptr<float>();
      }
      r.sr_stream = b.sr_streams.empty() ? 0 : static_cast<uint64_t>(b.sr_streams[i]);
      r.s1_absmax = b.absmax[0].empty() ? nullptr : b.absmax[0][i].data_ptr<float>();
      r.s2_absmax = b.absmax[1].empty() ? nullptr : b.absmax[1][i].data_ptr<float>();
      b.staged[i] = !flat;
    }
  }

  void run_cpu(Bucket& b) {
    Staging staging;
    for (int64_t i : b.staged_now) {
      const at::Tensor* state[3] = {b.state1.empty() ? nullptr : &b.state1[i], b.state2.empty() ? nullptr : &b.state2[i],
                                    b.state3.empty() ? nullptr : &b.state3[i]};
      const at::Tensor* master = b.masters.empty() ? nullptr : &b.masters[i];
      FlatParam f = flat_param(b.params[i], b.params[i].grad(), state, master, b.step.grad_scale.has_value(), staging);
      for (int j = 0; j < 2; ++j)
        if (!b.absmax[j].empty()) f.absmax[j] = b.absmax[j][i];
      b.refs.push_back(make_tensor_ref(f, b.steps[i], b.sr_streams.empty() ? 0 : b.sr_streams[i]));
    }
    cpu_group_step(b.step, b.refs.data(), static_cast<int64_t>(b.refs.size()), kernel_dtype(b.param_type, "params"),
                   kernel_dtype(b.state_type, "state"));
    staging.write_back();
  }

  // Also when no parameter of the bucket has a gradient: the op still records the applied lr, as the
  // CPU path does.
  void run_op(Bucket& b) {
    std::vector<at::Tensor> params, s1, s2, s3, steps, masters, absmax[2];
    std::vector<int64_t> streams;
    for (size_t i = 0; i < b.params.size(); ++i) {
      if (!b.params[i].grad().defined()) continue;
      params.push_back(b.params[i]);
      if (!b.state1.empty()) s1.push_back(b.state1[i]);
      if (!b.state2.empty()) s2.push_back(b.state2[i]);
      if (!b.state3.empty()) s3.push_back(b.state3[i]);
      if (!b.masters.empty()) masters.push_back(b.masters[i]);
      if (!b.sr_streams.empty()) streams.push_back(b.sr_streams[i]);
      for (int j = 0; j < 2; ++j)
        if (!b.absmax[j].empty()) absmax[j].push_back(b.absmax[j][i]);
      steps.push_back(b.steps[i]);
    }
    const c10::Device device = b.step.sched_state.device();
    auto on_device = [&](const std::optional<at::Tensor>& t) -> std::optional<at::Tensor> {
      if (!t) return std::nullopt;
      return t->device() == device ? *t : t->to(device, /*non_blocking=*/true);
    };
    GroupStep step = b.step;
    step.grad_scale = on_device(b.step.grad_scale);
    step.found_inf = on_device(b.step.found_inf);
    step.grad_factor = on_device(b.step.grad_factor);
    call_step_op(step, params, b.grads, s1, s2, s3, steps, masters, streams, absmax[0], absmax[1]);
  }

  std::vector<Bucket> buckets_;
  std::vector<at::Tensor> sched_states_;
};

// 8-bit state conversions for the Python side (creating 8-bit state from full-precision state, a checkpoint
// read back at another precision): the kernels' own quant8.h functions over a flat CPU float32 tensor.
std::tuple<at::Tensor, at::Tensor> quantize_blockwise(const at::Tensor& values, bool is_signed) {
  TORCH_CHECK(values.device().is_cpu() && values.scalar_type() == at::kFloat && values.is_contiguous(),
              "lrfused: quantize_blockwise takes a contiguous float32 CPU tensor");
  const int64_t n = values.numel();
  at::Tensor codes = at::empty(values.sizes(), values.options().dtype(at::kByte));
  at::Tensor absmax = at::empty({quant8::num_blocks(n)}, values.options());
  const float* in = values.const_data_ptr<float>();
  uint8_t* out = codes.mutable_data_ptr<uint8_t>();
  float* scales = absmax.mutable_data_ptr<float>();
  const int kind = is_signed ? quant8::SIGNED : quant8::UNSIGNED;
  for (int64_t first = 0; first < n; first += quant8::kQuantBlock) {
    const int64_t len = std::min<int64_t>(quant8::kQuantBlock, n - first);
    scales[first / quant8::kQuantBlock] = quant8::quantize_block(in + first, len, kind, out + first);
  }
  return {codes, absmax};
}

at::Tensor dequantize_blockwise(const at::Tensor& codes, const at::Tensor& absmax, bool is_signed) {
  TORCH_CHECK(codes.device().is_cpu() && codes.scalar_type() == at::kByte && codes.is_contiguous() &&
                  absmax.device().is_cpu() && absmax.scalar_type() == at::kFloat && absmax.is_contiguous() &&
                  absmax.numel() == quant8::num_blocks(codes.numel()),
              "lrfused: dequantize_blockwise takes contiguous CPU uint8 codes and float32 absmax (one per block)");
  at::Tensor values = at::empty(codes.sizes(), absmax.options());
  const uint8_t* in = codes.const_data_ptr<uint8_t>();
  const float* scales = absmax.const_data_ptr<float>();
  float* out = values.mutable_data_ptr<float>();
  const float* map = quant8::kMaps.map[is_signed ? quant8::SIGNED : quant8::UNSIGNED];
  for (int64_t first = 0; first < codes.numel(); first += quant8::kQuantBlock) {
    const int64_t len = std::min<int64_t>(quant8::kQuantBlock, codes.numel() - first);
    quant8::dequantize_block(in + first, len, map, scales[first / quant8::kQuantBlock], out + first);
  }
  return values;
}

}  // namespace

void bind_plan(pybind11::module& module) {
  module.def("quantize_blockwise", &quantize_blockwise, pybind11::arg("values"), pybind11::arg("signed"),
             "(codes, absmax): 8-bit block quantization of a flat float32 CPU tensor (csrc/quant8.h).");
  module.def("quantize_code", [](float x, bool is_signed) {
    return static_cast<int>(quant8::quantize(quant8::kMaps.map[is_signed ? quant8::SIGNED : quant8::UNSIGNED], x));
  }, "The code of one scaled value by quant8::quantize, the binary search the CUDA kernel runs.");
  module.def("quant8_fast_path_exact", [](bool is_signed) {
    return quant8::fast_quantizer(is_signed ? quant8::SIGNED : quant8::UNSIGNED).exact;
  }, "Whether the CPU's table quantizer equals quant8::quantize for every float (checked when built).");
  module.def("dequantize_blockwise", &dequantize_blockwise, pybind11::arg("codes"), pybind11::arg("absmax"),
             pybind11::arg("signed"), "float32 values of 8-bit codes and their block absmax (csrc/quant8.h).");
  module.def("built_with_cuda", []() {
#ifdef LRFUSED_WITH_CUDA
    return true;
#else
    return false;
#endif
  });
  module.def("check_grad", [](const at::Tensor& p, const at::Tensor& g) { check_grad(p, g, false); },
             "Raises unless g can be p's gradient in a fused step (what step() checks first).");
  module.def("check_program", [](const at::Tensor& program) { check_program(program); },
             "Raises unless the tensor is a valid packed schedule program (sched::validate_program).");
  module.def("cpu_simd_level", []() { return std::string(cpu::simd_level()); });
  pybind11::class_<Plan>(module, "Plan")
      .def(pybind11::init<>())
      .def("add_bucket", &Plan::add_bucket)
      .def("add_sched_state", &Plan::add_sched_state)
      .def("step", &Plan::step, pybind11::arg("grad_scale"), pybind11::arg("found_inf"),
           pybind11::arg("max_grad_norm"), pybind11::arg("clip_buffer"), pybind11::arg("stateless_params"),
           pybind11::arg("hypers"))
      .def_property_readonly("num_buckets", &Plan::num_buckets);
}

}  // namespace lrfused
