// Umbrella header: everything a C++ user of retrokv needs (no CUDA headers, plain g++).
// The example engine (retrokv/engine/) and the C API (retrokv/c_api.h) are included separately.
#pragma once

#include "retrokv/core/attention_state.h"
#include "retrokv/core/config.h"
#include "retrokv/core/error.h"
#include "retrokv/core/half.h"
#include "retrokv/core/npy.h"
#include "retrokv/core/topk.h"
#include "retrokv/core/view.h"
#include "retrokv/cpu/attention.h"
#include "retrokv/cuda/device.h"
#include "retrokv/index/flat.h"
#include "retrokv/index/ivf.h"
#include "retrokv/index/quest_index.h"
#include "retrokv/index/roar_graph.h"
#include "retrokv/index/token_index.h"
#include "retrokv/index/wave_index.h"
#include "retrokv/store/kv_vector_store.h"
