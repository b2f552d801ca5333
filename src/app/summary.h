// Human-readable tables printed by rank 0 at the end of a command (stdout).
#pragma once

#include "measures/distance.h"
#include "measures/eval.h"
#include "measures/spectrum.h"
#include "measures/stability.h"
#include "measures/traces.h"

namespace hessgap::app {

void print_traces(const measures::TracesResult& r);
void print_distance(const measures::DistanceResult& r);
void print_stability(const measures::StabilityResult& r, double eps);
void print_eval(const measures::EvalResult& r);
void print_spectrum(const measures::SpectrumResult& r);

}  // namespace hessgap::app
