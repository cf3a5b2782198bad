#include "test/testing.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace ptmpfs::testing {

uint64_t TestSeed() {
  const char* env = getenv("PTMPFS_SEED");
  uint64_t seed = 0;
  if (env != nullptr && absl::SimpleAtoi(env, &seed)) return seed;
  std::random_device device;
  return (uint64_t{device()} << 32) | device();
}

static uint64_t StatusKilobytes(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  const std::string prefix = absl::StrCat(field, ":");
  while (std::getline(status, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    uint64_t kilobytes = 0;
    std::string digits;
    for (char c : line.substr(prefix.size())) {
      if (c >= '0' && c <= '9') digits.push_back(c);
    }
    if (absl::SimpleAtoi(digits, &kilobytes)) return kilobytes * 1024;
  }
  return 0;
}

uint64_t PeakRssBytes() { return StatusKilobytes("VmHWM"); }
uint64_t RssBytes() { return StatusKilobytes("VmRSS"); }

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string pattern = absl::StrCat(base != nullptr ? base : "/var/tmp", "/ptmpfs-test-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace ptmpfs::testing
