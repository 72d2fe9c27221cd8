# Renders every template of one BOSH job the way the director does, with
# Ruby's standard library only: ERB with trim mode "-", p/if_p over the
# properties the job's spec declares (the manifest's value, else the spec's
# default), spec.*, link/if_link.
#
#   ruby render.rb INPUT.json        (or the script on stdin: ruby - INPUT.json)
#
# INPUT: {"job_dir": DIR, "out_dir": DIR, "properties": {...manifest job properties...},
#         "spec": {"id", "ip", "name", "index", "deployment", "address", "az", "bootstrap",
#                  "dns_domain_name" (default "bosh", as the director's), ...},
#         "links": {NAME: {"address", "instances": [{...}], "properties": {...}}}}
# Every template is written to OUT_DIR/DESTINATION; bin/* is made executable.
# Failures go to stderr, one line per template, and the exit status is 1.

require 'erb'
require 'fileutils'
require 'json'
require 'ostruct'
require 'yaml'

# The director's message, naming the property.
class UnknownProperty < StandardError
  def initialize(names)
    super("Can't find property '#{names.inspect}'")
  end
end

def lookup(hash, dotted)
  dotted.split('.').reduce(hash) do |node, key|
    return nil unless node.is_a?(Hash) && node.key?(key)

    node[key]
  end
end

def store(hash, dotted, value)
  *parents, last = dotted.split('.')
  parents.reduce(hash) { |node, key| node[key] ||= {} }[last] = value
end

# What a template sees: only declared properties, the manifest's value unless
# it is missing or null, else the spec default (which may be null).
def effective_properties(declared, manifest)
  (declared || {}).each_with_object({}) do |(name, definition), result|
    value = lookup(manifest, name)
    value = (definition || {})['default'] if value.nil?
    store(result, name, value)
  end
end

def to_ostruct(value)
  case value
  when Hash then OpenStruct.new(value.transform_values { |v| to_ostruct(v) })
  when Array then value.map { |v| to_ostruct(v) }
  else value
  end
end

# if_p and if_link return one of these; .else runs its block only when the
# first block did not run.
class ActiveElseBlock
  def else; end
end

class InactiveElseBlock
  def else
    yield
  end
end

# Both the template context and links answer p and if_p over a property tree.
module PropertyReader
  def p(*args)
    names = Array(args[0])
    names.each do |name|
      value = lookup(@props, name)
      return value unless value.nil?
    end
    return args[1] if args.length == 2

    raise UnknownProperty, names
  end

  def if_p(*names)
    values = names.map { |name| lookup(@props, name) }
    return InactiveElseBlock.new if values.any?(&:nil?)

    yield(*values)
    ActiveElseBlock.new
  end
end

class Link
  include PropertyReader
  attr_reader :instances, :address

  def initialize(data)
    @props = data['properties'] || {}
    @instances = (data['instances'] || []).map { |i| to_ostruct(i) }
    @address = data['address']
  end
end

class Context
  include PropertyReader
  attr_reader :spec, :name, :index, :properties, :raw_properties

  def initialize(job_name, props, spec, links)
    @props = props
    @raw_properties = props
    @properties = to_ostruct(props)
    @spec = to_ostruct(spec)
    @name = job_name
    @index = spec['index']
    @links = links
  end

  def link(name)
    data = @links[name]
    raise "Can't find link '#{name}'" if data.nil?

    Link.new(data)
  end

  def if_link(name)
    data = @links[name]
    return InactiveElseBlock.new if data.nil?

    yield Link.new(data)
    ActiveElseBlock.new
  end

  def template_binding
    binding
  end
end

input = JSON.parse(File.read(ARGV.fetch(0)))
job_dir = input.fetch('job_dir')
out_dir = input.fetch('out_dir')
job = YAML.safe_load(File.read(File.join(job_dir, 'spec')))
props = effective_properties(job['properties'], input['properties'] || {})
spec = { 'name' => job['name'], 'job' => { 'name' => job['name'] }, 'dns_domain_name' => 'bosh' }
       .merge(input['spec'] || {})

errors = []
(job['templates'] || {}).each do |source, destination|
  begin
    # A fresh copy per template, as the director renders each on its own.
    context = Context.new(job['name'], JSON.parse(JSON.generate(props)), spec, input['links'] || {})
    erb = ERB.new(File.read(File.join(job_dir, 'templates', source)), trim_mode: '-')
    erb.filename = source
    output = erb.result(context.template_binding)
    path = File.join(out_dir, destination)
    FileUtils.mkdir_p(File.dirname(path))
    File.write(path, output)
    File.chmod(destination.start_with?('bin/') ? 0o755 : 0o644, path)
  rescue StandardError, ScriptError => e
    line = (e.backtrace || []).map { |l| l[/\A#{Regexp.escape(source)}:(\d+)/, 1] }.compact.first
    errors << "Error filling in template '#{source}' (line #{line || '?'}: #{e.message})"
  end
end

unless errors.empty?
  warn errors.join("\n")
  exit 1
end
