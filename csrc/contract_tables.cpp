// lrfused._C.contract(): the tables of csrc/contract.h as Python dicts, read once by lrfused/contract.py.
// Every entry is generated from the same X-macro the C++ reads, so the two sides cannot disagree.
#include <torch/extension.h>

#include "contract.h"
#include "plan.h"
#include "quant8.h"

namespace lrfused {
namespace {

pybind11::list names_of(std::initializer_list<const char*> names) {
  pybind11::list out;
  for (const char* n : names) out.append(n);
  return out;
}

pybind11::dict contract_tables() {
  namespace py = pybind11;
  py::dict kinds;
#define LRF_NAME(name) #name,
#define LRF_KIND_ENTRY(NAME, ID)                                                                 \
  {                                                                                              \
    py::dict k;                                                                                  \
    k["id"] = static_cast<int>(sched::NAME);                                                     \
    k["fields"] = names_of({LRF_FIELDS_##NAME(LRF_NAME)});                                       \
    kinds[#NAME] = k;                                                                            \
  }
  LRF_SCHEDULE_KINDS(LRF_KIND_ENTRY)
#undef LRF_KIND_ENTRY
  py::dict records;
  records["ONE_CYCLE_PHASE"] = names_of({LRF_FIELDS_ONE_CYCLE_PHASE(LRF_NAME)});

  py::dict enums;
#define LRF_ENUM_ENTRY(NAME, V) e[#NAME] = V;
#define LRF_EXPORT_ENUM(TABLE, name) \
  {                                  \
    py::dict e;                      \
    TABLE(LRF_ENUM_ENTRY)            \
    enums[name] = e;                 \
  }
  LRF_EXPORT_ENUM(LRF_CYCLIC_SCALES, "cyclic_scale")
  LRF_EXPORT_ENUM(LRF_WSD_SHAPES, "wsd_shape")
  LRF_EXPORT_ENUM(LRF_ANNEALS, "anneal")
  LRF_EXPORT_ENUM(LRF_TIMM_SHAPES, "timm_shape")
  LRF_EXPORT_ENUM(LRF_TIMM_WSD_STABLES, "timm_wsd_stable")
  LRF_EXPORT_ENUM(LRF_TIMM_WSD_DECAYS, "timm_wsd_decay")
  LRF_EXPORT_ENUM(LRF_DS_WARMUPS, "ds_warmup")
#undef LRF_EXPORT_ENUM
#undef LRF_ENUM_ENTRY

  py::dict slots, regions;
#define LRF_SLOT_ENTRY(NAME, V, PY) slots[#PY] = V;
  LRF_SCHED_SLOTS(LRF_SLOT_ENTRY)
#undef LRF_SLOT_ENTRY
#define LRF_REGION_ENTRY(NAME, V, PY) regions[#PY] = V;
  LRF_SCHED_REGIONS(LRF_REGION_ENTRY)
#undef LRF_REGION_ENTRY

  py::dict optimizers, flags;
#define LRF_OPT_ENTRY(NAME, V, PY) optimizers[#PY] = V;
  LRF_OPTIMIZERS(LRF_OPT_ENTRY)
#undef LRF_OPT_ENTRY
#define LRF_FLAG_ENTRY(NAME, V, PY) flags[#PY] = V;
  LRF_OPT_FLAGS(LRF_FLAG_ENTRY)
#undef LRF_FLAG_ENTRY
  py::list sgd_hypers, adam_hypers;
#define LRF_HYPER_ENTRY(NAME, V, SGD_NAME, ADAM_NAME) \
  sgd_hypers.append(#SGD_NAME);                       \
  adam_hypers.append(#ADAM_NAME);
  LRF_HYPERS(LRF_HYPER_ENTRY)
#undef LRF_HYPER_ENTRY
  py::dict hypers;
  hypers["SGD"] = sgd_hypers;
  hypers["ADAM"] = adam_hypers;

  py::dict dtypes;
#define LRF_DTYPE_ENTRY(NAME, V, PY) dtypes[#NAME] = #PY;
  LRF_DTYPES(LRF_DTYPE_ENTRY)
#undef LRF_DTYPE_ENTRY
  py::list pairs;
#define LRF_PAIR_ENTRY(P, S) pairs.append(py::make_tuple(dtypes[#P], dtypes[#S]));
  LRF_DTYPE_PAIRS(LRF_PAIR_ENTRY)
#undef LRF_PAIR_ENTRY

  py::dict constants;
  constants["max_stack"] = sched::kMaxStack;
  constants["clip_eps"] = kClipEps;
  constants["plateau_max_groups_cuda"] = plateau::kMaxGroupsCuda;
  constants["quant_block"] = quant8::kQuantBlock;
  constants["min_quant_numel"] = quant8::kMinQuantNumel;
  constants["absmax_floor"] = quant8::kAbsmaxFloor;
  py::dict maps;
  for (int kind = 0; kind < 2; ++kind) {
    py::list values;
    for (float v : quant8::kMaps.map[kind]) values.append(v);
    maps[kind == quant8::SIGNED ? "signed" : "unsigned"] = values;
  }

  py::dict out;
  out["kinds"] = kinds;
  out["records"] = records;
  out["enums"] = enums;
  out["sched_slots"] = slots;
  out["sched_regions"] = regions;
  out["plateau_config"] = names_of({LRF_PLATEAU_CONFIG(LRF_NAME)});
  out["greedy_config"] = names_of({LRF_GREEDY_CONFIG(LRF_NAME)});
  {
    py::dict slots;
#define LRF_SLOT_ENTRY(NAME, V, PY) slots[#PY] = V;
    LRF_GREEDY_SLOTS(LRF_SLOT_ENTRY)
#undef LRF_SLOT_ENTRY
    out["greedy_slots"] = slots;
  }
  out["optimizers"] = optimizers;
  out["flags"] = flags;
  out["hypers"] = hypers;
  out["dtype_pairs"] = pairs;
  out["constants"] = constants;
  out["dynamic_maps"] = maps;
#undef LRF_NAME
  return out;
}

}  // namespace

void bind_contract(pybind11::module& module) {
  module.def("contract", &contract_tables,
             "The contract tables of csrc/contract.h (schedule kinds and fields, sched_state slots, optimizer "
             "kinds, flags, hyperparameter slots, plateau config, dtype pairs, constants).");
}

}  // namespace lrfused
