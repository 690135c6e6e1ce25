#include "absl/strings/string_view.h"
#include "cli/detcdctl/layout.h"

#include <algorithm>
#include <climits>
#include <map>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace detcd::ctl {
namespace {

// Display width: one column per rune (tabwriter counts runes;
// tablewriter's runewidth is the same for the text etcdctl prints).
int Width(absl::string_view s) {
  int n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;
  }
  return n;
}

// ---------------------------------------------------------------- tabwriter

struct Cell {
  std::string text;
  int width = 0;
};

class TabWriter {
 public:
  explicit TabWriter(absl::string_view text) {
    std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
    for (absl::string_view l : lines) {
      std::vector<Cell> cells;
      std::vector<absl::string_view> parts = absl::StrSplit(l, '\t');
      for (absl::string_view p : parts) {
        cells.push_back(Cell{std::string(p), Width(p)});
      }
      lines_.push_back(std::move(cells));
    }
  }

  std::string Format() {
    Format(0, static_cast<int>(lines_.size()));
    return out_;
  }

 private:
  static constexpr int kTabWidth = 8;
  static constexpr int kPadding = 1;

  void WritePadding(int textw, int cellw) {
    cellw = (cellw + kTabWidth - 1) / kTabWidth * kTabWidth;
    int n = cellw - textw;
    out_.append((n + kTabWidth - 1) / kTabWidth, '\t');
  }

  void WriteLines(int line0, int line1) {
    for (int i = line0; i < line1; ++i) {
      const std::vector<Cell>& line = lines_[i];
      for (size_t j = 0; j < line.size(); ++j) {
        const Cell& c = line[j];
        if (!c.text.empty()) out_ += c.text;
        if (j + 1 < line.size() && j < widths_.size()) {
          WritePadding(c.width, widths_[j]);
        }
      }
      if (i + 1 < static_cast<int>(lines_.size())) out_ += '\n';
    }
  }

  // Go's recursive column-block formatter: the cells of column `column`
  // in consecutive lines that have one form a block, padded to one width.
  void Format(int line0, int line1) {
    size_t column = widths_.size();
    for (int t = line0; t < line1; ++t) {
      // The last cell of a line is not tab-terminated: not in a column.
      if (column + 1 >= lines_[t].size()) continue;
      WriteLines(line0, t);
      line0 = t;
      int width = 0;
      for (; t < line1; ++t) {
        if (column + 1 >= lines_[t].size()) break;
        width = std::max(width, lines_[t][column].width + kPadding);
      }
      widths_.push_back(width);
      Format(line0, t);
      widths_.pop_back();
      line0 = t;
      --t;  // the for loop's ++t looks at line t again
    }
    WriteLines(line0, line1);
  }

  std::vector<std::vector<Cell>> lines_;
  std::vector<int> widths_;
  std::string out_;
};

// ---------------------------------------------------------------- table

// tablewriter's WrapWords: minimal raggedness line breaking.
std::vector<std::string> WrapString(const std::string& s, int lim) {
  std::vector<std::string> words =
      absl::StrSplit(s, ' ');  // newlines were joined with spaces already
  for (const std::string& w : words) lim = std::max(lim, Width(w));
  int n = static_cast<int>(words.size());
  std::vector<std::vector<int>> length(n, std::vector<int>(n));
  for (int i = 0; i < n; ++i) {
    length[i][i] = Width(words[i]);
    for (int j = i + 1; j < n; ++j) {
      length[i][j] = length[i][j - 1] + 1 + Width(words[j]);
    }
  }
  const int kPenalty = 100000;
  std::vector<int> nbrk(n), cost(n, INT_MAX);
  for (int i = n - 1; i >= 0; --i) {
    if (length[i][n - 1] <= lim) {
      cost[i] = 0;
      nbrk[i] = n;
    } else {
      for (int j = i + 1; j < n; ++j) {
        int d = lim - length[i][j - 1];
        int c = d * d + cost[j];
        if (length[i][j - 1] > lim) c += kPenalty;
        if (c < cost[i]) {
          cost[i] = c;
          nbrk[i] = j;
        }
      }
    }
  }
  std::vector<std::string> lines;
  for (int i = 0; i < n;) {
    std::vector<std::string> line(words.begin() + i, words.begin() + nbrk[i]);
    lines.push_back(absl::StrJoin(line, " "));
    i = nbrk[i];
  }
  return lines;
}

class Table {
 public:
  static constexpr int kMaxWidth = 30;

  std::vector<std::string> Parse(const std::string& s, int col, int row) {
    std::vector<std::string> raw = absl::StrSplit(s, '\n');
    int max_width = 0;
    for (const std::string& l : raw) max_width = std::max(max_width, Width(l));
    max_width = std::min(max_width, kMaxWidth);
    int new_max = max_width;
    std::vector<std::string> lines =
        WrapString(absl::StrJoin(raw, " "), max_width);
    for (const std::string& l : lines) new_max = std::max(new_max, Width(l));
    auto it = cs_.find(col);
    if (it == cs_.end() || it->second < new_max || it->second == 0) {
      cs_[col] = new_max;
    }
    int h = static_cast<int>(lines.size());
    auto rt = rs_.find(row);
    if (rt == rs_.end() || rt->second < h || rt->second == 0) rs_[row] = h;
    return lines;
  }

  std::string Render(const std::vector<std::string>& header,
                     const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::vector<std::string>> hdr;
    for (size_t i = 0; i < header.size(); ++i) {
      hdr.push_back(Parse(header[i], static_cast<int>(i), -1));
    }
    std::vector<std::vector<std::vector<std::string>>> lines;
    for (size_t r = 0; r < rows.size(); ++r) {
      std::vector<std::vector<std::string>> cells;
      for (size_t i = 0; i < rows[r].size(); ++i) {
        cells.push_back(
            Parse(rows[r][i], static_cast<int>(i), static_cast<int>(r)));
      }
      lines.push_back(std::move(cells));
    }
    Line();
    // Header: centered, Title-cased (upper, '_' to ' ').
    int hmax = rs_[-1];
    for (int x = 0; x < hmax; ++x) {
      out_ += "|";
      for (size_t y = 0; y < cs_.size(); ++y) {
        std::string h = y < hdr.size() && x < static_cast<int>(hdr[y].size())
                            ? hdr[y][x]
                            : "";
        out_ += " " + Center(Title(h), cs_[static_cast<int>(y)]) + " |";
      }
      out_ += "\n";
    }
    Line();
    for (size_t r = 0; r < lines.size(); ++r) {
      int max = rs_[static_cast<int>(r)];
      auto& cols = lines[r];
      for (auto& c : cols) {
        while (static_cast<int>(c.size()) < max) c.push_back("  ");
      }
      for (int x = 0; x < max; ++x) {
        for (size_t y = 0; y < cols.size(); ++y) {
          out_ += "| ";
          const std::string& s = cols[y][x];
          int gap = cs_[static_cast<int>(y)] - Width(s);
          if (gap > 0) out_.append(gap, ' ');
          out_ += s + " ";
        }
        out_ += "|\n";
      }
    }
    Line();
    return out_;
  }

 private:
  static std::string Title(std::string s) {
    size_t orig = s.size();
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '_') s[i] = ' ';
      if (s[i] == '.') {
        auto num = [&](size_t k) {
          return (s[k] >= '0' && s[k] <= '9') || s[k] == ' ';
        };
        if ((i != 0 && !num(i - 1)) || (i + 1 != s.size() && !num(i + 1))) {
          s[i] = ' ';
        }
      }
    }
    std::string t(absl::StripAsciiWhitespace(s));
    if (t.empty() && orig > 0) t = " ";
    return absl::AsciiStrToUpper(t);
  }

  static std::string Center(const std::string& s, int width) {
    int gap = width - Width(s);
    if (gap <= 0) return s;
    int left = gap / 2;
    return std::string(left, ' ') + s + std::string(gap - left, ' ');
  }

  void Line() {
    out_ += "+";
    for (size_t i = 0; i < cs_.size(); ++i) {
      out_ += std::string(cs_[static_cast<int>(i)] + 2, '-') + "+";
    }
    out_ += "\n";
  }

  std::map<int, int> cs_;  // column widths
  std::map<int, int> rs_;  // row heights (-1: header)
  std::string out_;
};

}  // namespace

std::string TabFormat(absl::string_view text) {
  return TabWriter(text).Format();
}

std::string RenderTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) {
  return Table().Render(header, rows);
}

}  // namespace detcd::ctl
