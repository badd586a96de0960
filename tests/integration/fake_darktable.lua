--[[
  A small stand-in for darktable's Lua API (API 9, darktable 4.x/5.x), enough to load
  plugins/darktable/findsimilar.lua outside darktable and press its buttons.

  `require "fake_darktable"` returns the controller; `require "darktable"` (what the
  script does) returns the fake API. Images are plain tables with the fields the real
  dt_lua_image_t has (id, path, filename, duplicate_index); `render` names a real file
  that the fake JPEG exporter copies, standing in for darktable's pipeline.
]]

local fake = {
  toasts = {}, errors = {}, logs = {}, actions = {}, events = {}, prefs = {},
  pref_defaults = {}, selected = {}, exports = {},
}

local dt = {
  configuration = { api_version_major = 9, api_version_minor = 3, api_version_patch = 0,
                    api_version_string = "9.3.0", running_os = "linux", version = "5.0.0" },
  films = {},
  database = {},
}

function dt.print(message) table.insert(fake.toasts, message) end
function dt.print_error(message) table.insert(fake.errors, message) end
function dt.print_log(message) table.insert(fake.logs, message) end

dt.gui = {
  action_images = {},
  libs = { image = {} },
}

function dt.gui.selection(images)
  local before = fake.selected
  if images ~= nil then
    assert(type(images) == "table", "selection takes a table of images")
    local copy = {}
    for i, image in ipairs(images) do
      assert(image.is_fake_image, "selection takes darktable images")
      copy[i] = image
    end
    fake.selected = copy
  end
  return before
end

function dt.gui.libs.image.register_action(name, label, callback, tooltip)
  assert(type(name) == "string" and type(label) == "string", "register_action(name, label, ...)")
  assert(type(callback) == "function", "register_action: callback must be a function")
  assert(tooltip == nil or type(tooltip) == "string")
  assert(not fake.actions[name], "action registered twice: " .. name)
  fake.actions[name] = { label = label, callback = callback, tooltip = tooltip }
end

function dt.gui.libs.image.destroy_action(name)
  assert(fake.actions[name], "no such action: " .. tostring(name))
  fake.actions[name] = nil
end

function dt.register_event(name, event, callback, description)
  assert(type(name) == "string", "register_event(name, event, ...) needs API 6.2.1+ names")
  assert(event == "shortcut", "the fake knows only shortcut events")
  assert(type(callback) == "function" and type(description) == "string")
  local key = name .. "/" .. event
  assert(not fake.events[key], "event registered twice: " .. key)
  fake.events[key] = { callback = callback, description = description }
end

function dt.destroy_event(name, event)
  local key = name .. "/" .. event
  assert(fake.events[key], "no such event: " .. key)
  fake.events[key] = nil
end

dt.preferences = {}

function dt.preferences.register(script, name, kind, label, tooltip, default, ...)
  assert(type(label) == "string" and type(tooltip) == "string")
  fake.pref_defaults[script .. "/" .. name] = { kind = kind, default = default }
end

function dt.preferences.read(script, name, kind)
  local key = script .. "/" .. name
  if fake.prefs[key] ~= nil then return fake.prefs[key] end
  local registered = fake.pref_defaults[key]
  if registered then return registered.default end
  return ({ integer = 0, float = 0, bool = false })[kind] or ""
end

local function copy_file(from, to)
  local src = assert(io.open(from, "rb"))
  local data = src:read("a")
  src:close()
  local dst = io.open(to, "wb")
  if not dst then return false end
  dst:write(data)
  dst:close()
  return true
end

function dt.new_format(name)
  assert(name == "jpeg", "the fake exports JPEG only")
  local format = { extension = "jpg", max_width = 0, max_height = 0 }
  function format.write_image(self, image, filename, upscale)
    assert(self == format, "write_image is a method: format:write_image(...)")
    table.insert(fake.exports, { image = image.filename, filename = filename,
                                 max_width = self.max_width, max_height = self.max_height })
    if not image.render then return true end -- darktable returns true on failure
    return not copy_file(image.render, filename)
  end
  return format
end

-- ---------------------------------------------------------------------------
-- The controller
-- ---------------------------------------------------------------------------

local next_id = 1

--- A library image: PATH is the folder (a darktable film roll), FILENAME the file.
function fake.image(path, filename, fields)
  local image = { id = next_id, path = path, filename = filename, duplicate_index = 0,
                  is_fake_image = true }
  next_id = next_id + 1
  for k, v in pairs(fields or {}) do image[k] = v end
  return image
end

--- Make IMAGES the darktable library: dt.database and one film roll per folder.
function fake.set_library(images)
  local films, by_path = {}, {}
  for i = #dt.database, 1, -1 do dt.database[i] = nil end
  for i, image in ipairs(images) do
    dt.database[i] = image
    local film = by_path[image.path]
    if not film then
      film = { path = image.path }
      by_path[image.path] = film
      table.insert(films, film)
    end
    table.insert(film, image)
  end
  for i = #dt.films, 1, -1 do dt.films[i] = nil end
  for i, film in ipairs(films) do dt.films[i] = film end
end

--- Without film rolls, as in an API that lacks them: the script must scan dt.database.
function fake.remove_films() dt.films = nil end

function fake.set_api(major, minor, text)
  dt.configuration.api_version_major = major
  dt.configuration.api_version_minor = minor
  dt.configuration.api_version_string = text
end

--- Press the button NAME in "selected image[s]" with IMAGES as the action images.
function fake.press(name, images)
  local action = assert(fake.actions[name], "no button " .. name)
  dt.gui.action_images = images
  return action.callback("clicked", images)
end

--- Press the shortcut NAME with IMAGES hovered or selected.
function fake.shortcut(name, images)
  local event = assert(fake.events[name .. "/shortcut"], "no shortcut " .. name)
  dt.gui.action_images = images
  return event.callback("shortcut", "ctrl+shift+f")
end

-- A tiny JSON encoder, so the Python test reads the outcome exactly (bytes that
-- are not ASCII pass through: the Python side decodes UTF-8).
local function encode(value)
  local t = type(value)
  if t == "string" then
    return '"' .. value:gsub('[%c"\\]', function(c)
      return ("\\u%04x"):format(c:byte())
    end) .. '"'
  elseif t == "number" or t == "boolean" then
    return tostring(value)
  elseif t == "nil" then
    return "null"
  elseif t == "table" then
    if value.is_fake_image then return encode(value.path .. "/" .. value.filename) end
    local keys = {}
    for k in pairs(value) do keys[#keys + 1] = k end
    if #keys == #value then
      local items = {}
      for i, v in ipairs(value) do items[i] = encode(v) end
      return "[" .. table.concat(items, ",") .. "]"
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local items = {}
    for _, k in ipairs(keys) do
      local v = value[k]
      if type(v) ~= "function" then items[#items + 1] = encode(tostring(k)) .. ":" .. encode(v) end
    end
    return "{" .. table.concat(items, ",") .. "}"
  end
  return encode(tostring(value))
end
fake.encode = encode

--- Print what the user would have seen, as one JSON line.
function fake.report(extra)
  local actions, events = {}, {}
  for name, a in pairs(fake.actions) do actions[name] = a.label end
  for key, e in pairs(fake.events) do events[key] = e.description end
  print(encode({ toasts = fake.toasts, errors = fake.errors, selected = fake.selected,
                 actions = actions, events = events, exports = fake.exports,
                 extra = extra or {} }))
end

package.preload["darktable"] = function() return dt end
fake.dt = dt
return fake
