// JSON read from files the user did not write, and written from values that hold the user's bytes. nlohmann's parser does not recurse, but dump(), copies
// and comparisons of a parsed value recurse once per nesting level: a 2 MB file of nested brackets
// parses fine and then overflows the stack when a message prints it (issue #12: exit 139 through a
// safetensors header, config.json, vocab.json, an index.json and a sweep spec). Every such file is
// parsed here, refusing more than kMaxJsonDepth levels while parsing. Header-only (util/ does not
// link nlohmann_json; its users do).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <utility>

#include "util/error.h"

namespace hessgap {

// Far above any real file (a config.json is 2-3 levels deep, a sweep spec about 5).
constexpr int kMaxJsonDepth = 128;

// nlohmann::json::parse(input) that throws hessgap::Error "<what>: JSON nested more than 128 levels
// deep" when the input nests deeper; parse errors stay nlohmann::json::parse_error, as before, for
// the caller to name. `input`: a string, a stream, or anything json::parse takes.
template <class Input>
nlohmann::json parse_json_bounded(Input&& input, const std::string& what) {
  return nlohmann::json::parse(std::forward<Input>(input),
                               [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
                                 HG_CHECK(depth < kMaxJsonDepth,  // depth counts from 0
                                          what << ": JSON nested more than " << kMaxJsonDepth << " levels deep");
                                 return true;
                               });
}

// j.dump(indent) for text that may hold bytes that are not UTF-8 (paths are bytes on Linux): they are
// written as U+FFFD instead of throwing json's type_error 316 (an "internal error" before). Two
// values that differ only in such bytes print alike.
inline std::string json_text(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace hessgap
