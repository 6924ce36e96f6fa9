// The eager fast path: a launch plan cached per parameter set (see optim_cpu.cpp / plan.cpp).
#pragma once
#include <torch/extension.h>

namespace lrfused {
void bind_plan(pybind11::module& module);
void bind_contract(pybind11::module& module);  // contract_tables.cpp
}
