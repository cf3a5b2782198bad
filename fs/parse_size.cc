#include "fs/parse_size.h"

#include <algorithm>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

namespace ptmpfs::fs {

namespace {

absl::Status Invalid(absl::string_view what, absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrFormat("%s=%s: %s", what, text, why));
}

}  // namespace

absl::StatusOr<uint64_t> ParseSize(absl::string_view what, absl::string_view text,
                                   uint64_t ram_bytes) {
  if (text.empty()) return Invalid(what, text, "empty");
  absl::string_view digits = text;
  uint64_t multiplier = 1;
  bool percent = false;
  switch (text.back()) {
    case 'k':
    case 'K':
      multiplier = uint64_t{1} << 10;
      break;
    case 'm':
    case 'M':
      multiplier = uint64_t{1} << 20;
      break;
    case 'g':
    case 'G':
      multiplier = uint64_t{1} << 30;
      break;
    case 't':
    case 'T':
      multiplier = uint64_t{1} << 40;
      break;
    case '%':
      percent = true;
      break;
    default:
      break;
  }
  if (multiplier != 1 || percent) digits.remove_suffix(1);
  uint64_t number;
  if (digits.empty() ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      !absl::SimpleAtoi(digits, &number)) {
    return Invalid(what, text,
                   ram_bytes != 0 ? "not a size (a number with k, m, g, t or % after it)"
                                  : "not a size (a number with k, m, g or t after it)");
  }
  if (percent) {
    if (ram_bytes == 0) return Invalid(what, text, "% is not allowed here");
    if (number > 10000) return Invalid(what, text, "more than 10000% of RAM");
    // 128 bits hold any RAM size times 10000.
    const unsigned __int128 bytes = static_cast<unsigned __int128>(ram_bytes) * number / 100;
    if (bytes > std::numeric_limits<uint64_t>::max()) return Invalid(what, text, "too large");
    return static_cast<uint64_t>(bytes);
  }
  if (number > std::numeric_limits<uint64_t>::max() / multiplier) {
    return Invalid(what, text, "too large");
  }
  return number * multiplier;
}

}  // namespace ptmpfs::fs
