--[[
  findsimilar.lua: find similar photos from darktable's lighttable.

  Adds two buttons to the "selected image[s]" module (and two shortcuts under
  preferences > shortcuts > lua):

    find similar                  selects the images of the darktable library that
                                  findsimilar finds similar to the selected image(s)
    findsimilar results page      opens findsimilar's results page (thumbnails of
                                  every match, also those not in the library)

  Installed by `findsimilar integrate install darktable`, which copies this file to
  $XDG_CONFIG_HOME/darktable/lua/contrib/findsimilar.lua, adds
  `require "contrib/findsimilar"` to $XDG_CONFIG_HOME/darktable/luarc and replaces
  the placeholder in FINDSIMILAR below with the findsimilar command: either the
  path of the executable, or an argv prefix already quoted for /bin/sh.

  The script only calls the findsimilar CLI (`search --json`, `show --notify`);
  it never imports images, changes them or touches darktable's database.
  It needs darktable 3.6 or newer (Lua API 7).
]]

local dt = require "darktable"

local MODULE = "findsimilar"
local FINDSIMILAR = [==[@FINDSIMILAR@]==]
local PLACEHOLDER = "@" .. "FINDSIMILAR@" -- split so the installer leaves it alone
local DEFAULT_TOP = 20
-- Where `findsimilar dupes` starts looking at neighbours; below it a "match" is only the
-- least different photo, which is no use as a selection. That cosine is the model's
-- (0.60 with efficientnet-lite0-gem, lower with gem512, whose scores sit lower), and this
-- script cannot know the model: the default asks for `--min-score auto`, which the
-- daemon resolves for the model whose index answers. Any other value is passed as it is.
local DEFAULT_MIN_SCORE = 0.6

-- Extensions findsimilar decodes itself (daemon/scanner.py IMAGE_EXTENSIONS but its
-- RAW_EXTENSIONS). Other files, raw files above all, are first rendered by darktable to
-- a JPEG preview, so that the search is for the picture with the user's edits
-- (findsimilar indexes raw files too: they are among the matches).
local READABLE = {}
for ext in ([[jpg jpeg jpe jfif png apng webp tif tiff bmp dib gif pnm pbm pgm ppm pam
             heic heif hif avif avifs
             jxl]]):gmatch("%S+") do
  READABLE[ext] = true
end

-- ---------------------------------------------------------------------------
-- JSON: darktable's Lua has no JSON library, so this is a small strict decoder
-- (RFC 8259 values; \uXXXX escapes incl. surrogate pairs; a lone low surrogate
-- U+DC80..U+DCFF becomes the raw byte, undoing Python's surrogateescape).
-- ---------------------------------------------------------------------------

local json = {}

local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f",
                  n = "\n", r = "\r", t = "\t" }

local decode_value -- forward declaration

local function skip_space(s, i)
  return (s:find("[^ \t\r\n]", i)) or (#s + 1)
end

local function decode_error(s, i, what)
  error({ json = true, message = ("%s at byte %d"):format(what, i) }, 0)
end

local function codepoint_to_utf8(cp)
  if cp >= 0xDC80 and cp <= 0xDCFF then
    return string.char(cp - 0xDC00) -- surrogateescape'd byte of a non-UTF-8 path
  elseif cp >= 0xD800 and cp <= 0xDFFF then
    return "\239\191\189" -- any other lone surrogate: U+FFFD
  end
  return utf8.char(cp)
end

local function decode_string(s, i)
  -- s:sub(i, i) == '"'
  local parts, pos = {}, i + 1
  while true do
    local j = s:find('["\\%c]', pos)
    if not j then decode_error(s, pos, "unterminated string") end
    parts[#parts + 1] = s:sub(pos, j - 1)
    local c = s:sub(j, j)
    if c == '"' then
      return table.concat(parts), j + 1
    elseif c ~= "\\" then
      decode_error(s, j, "control character in string")
    end
    local e = s:sub(j + 1, j + 1)
    if ESCAPES[e] then
      parts[#parts + 1] = ESCAPES[e]
      pos = j + 2
    elseif e == "u" then
      local hex = s:match("^%x%x%x%x", j + 2)
      if not hex then decode_error(s, j, "bad \\u escape") end
      local cp = tonumber(hex, 16)
      pos = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local low = s:match("^\\u(%x%x%x%x)", pos)
        low = low and tonumber(low, 16)
        if low and low >= 0xDC00 and low <= 0xDFFF then
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
          pos = pos + 6
        end
      end
      parts[#parts + 1] = codepoint_to_utf8(cp)
    else
      decode_error(s, j, "bad escape")
    end
  end
end

local function decode_number(s, i)
  local int = s:match("^-?0", i) or s:match("^-?[1-9]%d*", i)
  if not int then decode_error(s, i, "bad number") end
  local j = i + #int
  local frac = s:match("^%.%d+", j) or ""
  j = j + #frac
  local exp = s:match("^[eE][-+]?%d+", j) or ""
  j = j + #exp
  return tonumber(int .. frac .. exp), j
end

local function decode_array(s, i)
  local arr, n = {}, 0
  i = skip_space(s, i + 1)
  if s:sub(i, i) == "]" then return arr, i + 1 end
  while true do
    local value
    value, i = decode_value(s, i)
    n = n + 1
    arr[n] = value
    i = skip_space(s, i)
    local c = s:sub(i, i)
    if c == "]" then return arr, i + 1 end
    if c ~= "," then decode_error(s, i, "expected ',' or ']'") end
    i = skip_space(s, i + 1)
  end
end

local function decode_object(s, i)
  local obj = {}
  i = skip_space(s, i + 1)
  if s:sub(i, i) == "}" then return obj, i + 1 end
  while true do
    if s:sub(i, i) ~= '"' then decode_error(s, i, "expected a key") end
    local key
    key, i = decode_string(s, i)
    i = skip_space(s, i)
    if s:sub(i, i) ~= ":" then decode_error(s, i, "expected ':'") end
    local value
    value, i = decode_value(s, skip_space(s, i + 1))
    obj[key] = value
    i = skip_space(s, i)
    local c = s:sub(i, i)
    if c == "}" then return obj, i + 1 end
    if c ~= "," then decode_error(s, i, "expected ',' or '}'") end
    i = skip_space(s, i + 1)
  end
end

json.null = setmetatable({}, { __tostring = function() return "null" end })

decode_value = function(s, i)
  i = skip_space(s, i)
  local c = s:sub(i, i)
  if c == "{" then return decode_object(s, i)
  elseif c == "[" then return decode_array(s, i)
  elseif c == '"' then return decode_string(s, i)
  elseif c == "-" or c:match("%d") then return decode_number(s, i)
  elseif s:sub(i, i + 3) == "true" then return true, i + 4
  elseif s:sub(i, i + 4) == "false" then return false, i + 5
  elseif s:sub(i, i + 3) == "null" then return json.null, i + 4
  end
  decode_error(s, i, c == "" and "unexpected end" or "unexpected character")
end

--- Decode one JSON text. Returns the value, or nil and a message.
function json.decode(s)
  local ok, value, i = pcall(decode_value, s, 1)
  if not ok then
    if type(value) == "table" and value.json then return nil, value.message end
    error(value, 0)
  end
  i = skip_space(s, i)
  if i <= #s then return nil, ("trailing text at byte %d"):format(i) end
  return value
end

-- ---------------------------------------------------------------------------
-- Running the CLI
-- ---------------------------------------------------------------------------

--- A string as one /bin/sh word. Any byte is safe inside single quotes, newlines too.
local function shell_quote(s)
  return "'" .. s:gsub("'", [['\'']]) .. "'"
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- The start of every command line: the installed executable, quoted if it is a
--- path (it may hold spaces), or an argv prefix the installer quoted already.
local function command_prefix()
  if FINDSIMILAR == PLACEHOLDER or FINDSIMILAR == "" then
    return "findsimilar" -- not installed by `integrate`: whatever is on PATH
  end
  if file_exists(FINDSIMILAR) then return shell_quote(FINDSIMILAR) end
  return FINDSIMILAR
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local text = f:read("a") or ""
  f:close()
  return text
end

--- Run a shell command line. Returns stdout, stderr and the exit code
--- (128 + N when killed by signal N, as the shell reports it).
local function run(cmd)
  local errfile = os.tmpname()
  local pipe = io.popen(cmd .. " </dev/null 2>" .. shell_quote(errfile), "r")
  if not pipe then
    os.remove(errfile)
    return "", "could not start /bin/sh", 127
  end
  local out = pipe:read("a") or ""
  local _, how, code = pipe:close()
  local err = read_file(errfile)
  os.remove(errfile)
  code = tonumber(code) or 1
  if how == "signal" then code = 128 + code end
  return out, err, code
end

--- The message to show for a failed command: the CLI's last "error:" line.
local function failure_message(err, code)
  local message
  for line in err:gmatch("[^\n]+") do
    local text = line:match("^findsimilar: error: (.*)") or line:match("^[Ee]rror: (.*)")
    if text then message = text end
  end
  if not message and code == 127 then
    return "the findsimilar command was not found (" .. command_prefix()
        .. "): run `findsimilar integrate install darktable` again"
  end
  if not message then
    local last = err:match("([^\n]+)\n*$")
    message = last or ("findsimilar exited with code " .. code)
  end
  return message
end

--- Parse `search --json` output: one object per query per line. Returns the
--- result paths in order (each once) and the number of answered queries.
--- A RAW+JPEG pair is one result: its other file (`pair`) follows its `path`, as
--- darktable has an image for each.
local function parse_search_output(out)
  local paths, seen, answered = {}, {}, 0
  local function add(path)
    if type(path) == "string" and not seen[path] then
      seen[path] = true
      paths[#paths + 1] = path
    end
  end
  for line in out:gmatch("[^\n]+") do
    local result = line:sub(1, 1) == "{" and json.decode(line)
    if type(result) == "table" and type(result.results) == "table" then
      answered = answered + 1
      for _, match in ipairs(result.results) do
        if type(match) == "table" then
          add(match.path)
          add(match.pair)
        end
      end
    end
  end
  return paths, answered
end

-- ---------------------------------------------------------------------------
-- darktable side
-- ---------------------------------------------------------------------------

local function image_file(image)
  return image.path .. "/" .. image.filename
end

local function top_setting()
  local ok, value = pcall(dt.preferences.read, MODULE, "top", "integer")
  value = ok and tonumber(value) or 0
  return value >= 1 and math.floor(value) or DEFAULT_TOP
end

local function min_score_setting()
  local ok, value = pcall(dt.preferences.read, MODULE, "min_score", "float")
  value = ok and tonumber(value) or nil
  if not value or value < 0 or value > 1 then return DEFAULT_MIN_SCORE end
  return value
end

local function cache_dir()
  local base = os.getenv("XDG_CACHE_HOME")
  if not base or base:sub(1, 1) ~= "/" then base = (os.getenv("HOME") or "/tmp") .. "/.cache" end
  return base .. "/findsimilar/darktable"
end

--- A file findsimilar can read for this image: the image itself, or for a raw
--- file a JPEG that darktable renders of it. Returns the path, or nil and why.
local function query_file(image)
  local file = image_file(image)
  local ext = (image.filename:match("%.([^./]+)$") or ""):lower()
  if READABLE[ext] then return file end
  if not dt.new_format then return nil, image.filename .. " is not a format findsimilar reads" end
  local dir = cache_dir()
  os.execute("mkdir -p " .. shell_quote(dir))
  local id = tostring(image.id):gsub("[^%w]", "_")
  local target = ("%s/query-%s.jpg"):format(dir, id)
  os.remove(target)
  local ok, err = pcall(function()
    local format = dt.new_format("jpeg")
    format.max_width, format.max_height = 1024, 1024
    format:write_image(image, target, false)
  end)
  local f = io.open(target, "rb")
  local size = f and f:seek("end") or 0
  if f then f:close() end
  if ok and size > 0 then return target end
  return nil, "could not render " .. image.filename .. " for findsimilar"
      .. (ok and "" or (": " .. tostring(err)))
end

local function query_files(images)
  local files, problems = {}, {}
  for _, image in ipairs(images) do
    local file, why = query_file(image)
    if file then files[#files + 1] = file else problems[#problems + 1] = why end
  end
  return files, problems
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or ""
end

--- The images of the darktable library for each wanted file path: a path maps to
--- a list, as a file has one image per darktable duplicate. Only the film rolls
--- (folders) of the wanted files are read, so large libraries stay quick.
local function library_images(wanted)
  local folders, found = {}, {}
  for path in pairs(wanted) do folders[dirname(path)] = true end
  local function consider(image)
    local file = image_file(image)
    if wanted[file] then
      found[file] = found[file] or {}
      table.insert(found[file], image)
    end
  end
  local ok = dt.films ~= nil and pcall(function()
    for i = 1, #dt.films do
      local film = dt.films[i]
      if folders[film.path] then
        for j = 1, #film do consider(film[j]) end
      end
    end
  end)
  if not ok then -- no film rolls in this API: walk the whole library
    found = {}
    for i = 1, #dt.database do consider(dt.database[i]) end
  end
  return found
end

local function plural(n, one, many)
  return ("%d %s"):format(n, n == 1 and one or many)
end

local function report_failure(message)
  dt.print_error("findsimilar: " .. message)
  dt.print("findsimilar: " .. message)
end

local function action_images(images)
  if images and #images > 0 then return images end
  return dt.gui.action_images or {}
end

--- The files to query for IMAGES (or the images acted on), shell-quoted, and what went
--- wrong with the others; nil after telling the user when there is nothing to query.
local function quoted_query_files(images)
  images = action_images(images)
  if #images == 0 then
    dt.print("findsimilar: select an image first")
    return nil
  end
  local files, problems = query_files(images)
  if #files == 0 then
    report_failure(problems[1])
    return nil
  end
  local words = {}
  for i, file in ipairs(files) do words[i] = shell_quote(file) end
  return words, problems
end

--- Select the images of the library that findsimilar finds similar to IMAGES.
local function find_similar(images)
  local words, problems = quoted_query_files(images)
  if not words then return end
  dt.print("findsimilar: searching…")
  -- The score is written digit by digit: "%f" would follow the locale (0,6 in de_DE).
  local score = math.floor(min_score_setting() * 10000 + 0.5)
  local floor = ("%d.%04d"):format(score // 10000, score % 10000)
  if score == math.floor(DEFAULT_MIN_SCORE * 10000 + 0.5) then floor = "auto" end
  local cmd = ("%s search --json -k %d --min-score %s -- %s"):format(
    command_prefix(), top_setting(), floor, table.concat(words, " "))
  local out, err, code = run(cmd)
  local paths, answered = parse_search_output(out)
  if answered == 0 then
    return report_failure(code ~= 0 and failure_message(err, code)
                          or "no answer from findsimilar search")
  end
  if code ~= 0 then dt.print_error("findsimilar: " .. failure_message(err, code)) end

  local wanted = {}
  for _, path in ipairs(paths) do wanted[path] = true end
  local found = library_images(wanted)
  local selection, in_library = {}, 0
  for _, path in ipairs(paths) do
    if found[path] then
      in_library = in_library + 1
      for _, image in ipairs(found[path]) do selection[#selection + 1] = image end
    end
  end
  local missing = #paths - in_library
  local message
  if #paths == 0 then
    message = "findsimilar: no similar images found"
  elseif in_library == 0 then
    message = ("findsimilar: %s found, none in the darktable library"):format(
      plural(#paths, "similar image", "similar images"))
  else
    dt.gui.selection(selection)
    message = ("findsimilar: %s selected"):format(
      plural(in_library, "similar image", "similar images"))
    if missing > 0 then
      message = message .. (" (%d not in the darktable library)"):format(missing)
    end
  end
  if code ~= 0 or #problems > 0 then message = message .. "; some images failed" end
  dt.print(message)
  return message
end

--- Open findsimilar's results page for IMAGES, without waiting for it.
local function show_results(images)
  local words = quoted_query_files(images)
  if not words then return end
  -- `show --notify` reports its own failures (no daemon, not indexed) on the desktop.
  local cmd = ("%s show --notify -- %s </dev/null >/dev/null 2>&1 &"):format(
    command_prefix(), table.concat(words, " "))
  os.execute(cmd)
  dt.print("findsimilar: opening the results page…")
  return cmd
end

--- Run FN so that no Lua error ever escapes into darktable: it is logged and shown.
local function guarded(fn)
  return function(event, arg)
    local ok, result = xpcall(fn, debug.traceback, type(arg) == "table" and arg or nil)
    if not ok then
      dt.print_error("findsimilar: " .. tostring(result))
      dt.print("findsimilar: internal error (see darktable's log)")
      return nil
    end
    return result
  end
end

-- ---------------------------------------------------------------------------
-- Registration
-- ---------------------------------------------------------------------------

local script_data = {
  metadata = {
    name = "findsimilar",
    purpose = "select the images findsimilar finds similar to the selected one",
    author = "findsimilar",
  },
  -- Internals, for tests and the curious.
  internals = { json = json, shell_quote = shell_quote, run = run,
                parse_search_output = parse_search_output, command_prefix = command_prefix,
                failure_message = failure_message, find_similar = find_similar,
                show_results = show_results },
}

local function api_version()
  local conf = dt.configuration or {}
  local major, minor = tonumber(conf.api_version_major), tonumber(conf.api_version_minor)
  if not major and type(conf.api_version_string) == "string" then
    major, minor = conf.api_version_string:match("^(%d+)%.(%d+)")
    major, minor = tonumber(major), tonumber(minor)
  end
  return major or 0, minor or 0
end

local major = api_version()
if major < 7 then
  -- register_action and register_event take a name from API 7.0 (darktable 3.6) on.
  report_failure("this script needs darktable 3.6 or newer (Lua API 7); this is API "
                 .. tostring((dt.configuration or {}).api_version_string or major))
  return script_data
end

local find_cb, show_cb = guarded(find_similar), guarded(show_results)

pcall(dt.preferences.register, MODULE, "top", "integer",
      "findsimilar: number of similar images",
      "how many similar images `find similar` selects at most", DEFAULT_TOP, 1, 1000)
pcall(dt.preferences.register, MODULE, "min_score", "float",
      "findsimilar: minimum similarity",
      "cosine score from 0 to 1 a photo needs to count as similar (1 = the same picture; "
      .. "the default 0.60 = automatic: where findsimilar dupes starts, for its model)",
      DEFAULT_MIN_SCORE, 0, 1, 0.05)

dt.gui.libs.image.register_action(MODULE .. "_find", "find similar",
  function(event, images) return find_cb(event, images) end,
  "select the images findsimilar finds similar to the selected one")
dt.gui.libs.image.register_action(MODULE .. "_show", "findsimilar results page",
  function(event, images) return show_cb(event, images) end,
  "open findsimilar's results page for the selected image")
dt.register_event(MODULE .. "_find", "shortcut",
  function(event, shortcut) return find_cb(event, nil) end,
  "findsimilar: select similar images")
dt.register_event(MODULE .. "_show", "shortcut",
  function(event, shortcut) return show_cb(event, nil) end,
  "findsimilar: open the results page")

script_data.destroy = function()
  dt.gui.libs.image.destroy_action(MODULE .. "_find")
  dt.gui.libs.image.destroy_action(MODULE .. "_show")
  dt.destroy_event(MODULE .. "_find", "shortcut")
  dt.destroy_event(MODULE .. "_show", "shortcut")
end

return script_data
