// Umbrella header: everything a C++ user of retrokv needs (no CUDA headers).
#pragma once

#include "retrokv/core/attention_state.h"
#include "retrokv/core/config.h"
#include "retrokv/core/error.h"
#include "retrokv/core/half.h"
#include "retrokv/core/view.h"
#include "retrokv/cuda/device.h"
#include "retrokv/index/token_index.h"
