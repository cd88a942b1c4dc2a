-- wrk script for bench/run: one operation over one transport.
--
--   wrk ... -s bench/wrk/bench.lua URL -- OP TRANSPORT TOKEN CASE THREADS [FILE]
--
-- OP        register_email | register_noemail | verify_username |
--           verify_email | confirm | resend_sms | register_rows (the
--           floor's POST /register-rows, a register with email)
-- TRANSPORT rest | graphql | floor (the floor server: POST /register,
--           GET /verify)
-- TOKEN     bearer token ("-" for the floor)
-- CASE      0..999, unique per wrk invocation against one server: phones
--           are "+62812" .. CASE (3 digits) .. thread id (1 digit) ..
--           counter (5 digits), 12 digits after +62, a valid Indonesian
--           mobile number, never repeated within a server's life
-- THREADS   the wrk thread count (to split FILE between threads)
-- FILE      confirm: lines "PHONE CODE" (one pre-registered phone and its
--           SMS code each, used once); resend_sms: lines "PHONE"
--
-- Every thread has its own Lua state: setup() gives each an id, response()
-- counts errors there (a status outside 2xx, or a GraphQL answer with
-- "errors"), and done() sums them and prints one line
--   BENCHJSON {...}
-- that bench/run parses, plus "BENCHERR <first error>" lines.

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local op, transport, token, case_id, nthreads, file
local counter = 0
local entries = {}
local cursor = 0
errors = 0
responses = 0
exhausted = 0
first_error = ""
local graphql = false

local PASSWORD_MD5 = "BCA401D0568D3633AFA989CF52882969" -- md5("benchmark password")

local TICKET = "id username phone tokenPrefix tokenType attempt active expiryMinutes " ..
  "expiryTimestamp requestTimestamp accountGroupId attemptsRemaining " ..
  "smsResendsRemaining emailResendsRemaining nextResendAt"

function init(args)
  op = args[1]
  transport = args[2]
  token = args[3]
  case_id = tonumber(args[4])
  nthreads = tonumber(args[5])
  file = args[6]
  graphql = transport == "graphql"
  if file ~= nil and file ~= "" then
    local n = 0
    for line in io.lines(file) do
      if line ~= "" then
        if n % nthreads == id - 1 then
          table.insert(entries, line)
        end
        n = n + 1
      end
    end
  end
end

local function next_phone()
  counter = counter + 1
  -- Five digits of counter keep the number valid for Indonesia (a sixth
  -- made it too long, and verify then answered 400 past 100,000 requests
  -- a thread); beyond that the phones repeat, which verify does not mind
  -- and register, far slower, never reaches.
  return string.format("+62812%03d%d%05d", case_id, id, counter % 100000)
end

-- The next pre-registered entry, round the list again past its end. A
-- single-use entry (a confirm's code) taken again is one the server will
-- refuse: that is counted, and bench/run reports it. Resend goes round its
-- registrations by design.
local function next_entry(single_use)
  cursor = cursor + 1
  if cursor > #entries then
    if single_use then
      exhausted = exhausted + 1
    end
    cursor = 1
  end
  return entries[cursor]
end

local function headers(json)
  local h = {}
  if token ~= "-" then
    h["Authorization"] = "Bearer " .. token
  end
  if json then
    h["Content-Type"] = "application/json"
  end
  return h
end

local function post(path, body)
  return wrk.format("POST", path, headers(true), body)
end

local function gql(query, variables)
  return post("/graphql", '{"query":"' .. query .. '","variables":' .. variables .. '}')
end

local function register_input(phone, with_email)
  local email = ""
  if with_email then
    email = '"email":"' .. phone:sub(2) .. '@example.com",'
  end
  return '{"phone":"' .. phone .. '","name":"Septian Cahyo","birthDate":"1990-12-31",' ..
    '"birthPlace":"Jakarta",' .. email .. '"gender":true,"countryId":"ID",' ..
    '"sourceId":"01011","accountGroupId":"01"}'
end

function request()
  if op == "register_rows" then
    return post("/register-rows", register_input(next_phone(), true))
  elseif op == "register_email" or op == "register_noemail" then
    local input = register_input(next_phone(), op == "register_email")
    if transport == "rest" then
      return post("/b2b/customer/register", input)
    elseif transport == "graphql" then
      return gql("mutation($i: RegisterInput!) { register(input: $i) { " .. TICKET .. " } }",
        '{"i":' .. input .. '}')
    else
      return post("/register", input)
    end
  elseif op == "verify_username" then
    local phone = next_phone()
    if transport == "rest" then
      return wrk.format("GET", "/b2b/customer/auth/verifyUsername?username=%2B" .. phone:sub(2),
        headers(false))
    elseif transport == "graphql" then
      return gql("query($u: String!) { verifyUsername(username: $u) { username exists } }",
        '{"u":"' .. phone .. '"}')
    else
      return wrk.format("GET", "/verify?username=%2B" .. phone:sub(2), headers(false))
    end
  elseif op == "verify_email" then
    local email = next_phone():sub(2) .. "@example.com"
    if transport == "rest" then
      return wrk.format("GET", "/b2b/customer/auth/verifyEmail?email=" .. email, headers(false))
    elseif transport == "graphql" then
      return gql("query($e: String!) { verifyEmail(email: $e) { email exists } }",
        '{"e":"' .. email .. '"}')
    else
      return wrk.format("GET", "/verify?username=" .. email, headers(false))
    end
  elseif op == "confirm" then
    local phone, code = next_entry(true):match("^(%S+) (%S+)$")
    local input = '{"username":"' .. phone .. '","password":"' .. PASSWORD_MD5 ..
      '","token":"' .. code .. '"}'
    if transport == "rest" then
      return post("/b2b/customer/register/confirm", input)
    else
      return gql("mutation($i: ConfirmRegistrationInput!) { confirmRegistration(input: $i) " ..
        "{ id customerId username completedAt } }", '{"i":' .. input .. '}')
    end
  elseif op == "resend_sms" then
    local phone = next_entry(false)
    local input = '{"username":"' .. phone .. '","phone":"' .. phone .. '"}'
    if transport == "rest" then
      return post("/b2b/customer/resend/registration/sms", input)
    else
      return gql("mutation($i: ResendInput!) { resendRegistrationSms(input: $i) { " ..
        TICKET .. " } }", '{"i":' .. input .. '}')
    end
  end
  error("unknown operation " .. tostring(op))
end

function response(status, headers, body)
  responses = responses + 1
  local bad = status < 200 or status > 299
  if not bad and graphql and body ~= nil and body:find('"errors"', 1, true) then
    bad = true
  end
  if bad then
    errors = errors + 1
    if first_error == "" then
      first_error = status .. " " .. (body or ""):sub(1, 300):gsub("[\r\n]", " ")
    end
  end
end

function done(summary, latency, requests)
  local app_errors, counted, out_of_entries = 0, 0, 0
  for _, thread in ipairs(threads) do
    app_errors = app_errors + (thread:get("errors") or 0)
    counted = counted + (thread:get("responses") or 0)
    out_of_entries = out_of_entries + (thread:get("exhausted") or 0)
    local first = thread:get("first_error")
    if first ~= nil and first ~= "" then
      io.write("BENCHERR " .. first .. "\n")
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"p50_us":%.0f,"p99_us":%.0f,' ..
    '"max_us":%.0f,"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d,' ..
    '"app_errors":%d,"responses":%d,"exhausted":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.timeout, e.status,
    app_errors, counted, out_of_entries))
end
