defmodule HyParView.Test.Netns do
  @moduledoc """
  Two network namespaces joined by one veth pair, for partition tests.

  Side `:a` has address `10.231.<n>.1`, side `:b` `10.231.<n>.2`; these exist
  only inside the namespaces this module creates. A partition takes the
  veth down (new connections fail, packets on established ones vanish, so
  failures are found by heartbeat timeouts); healing brings it back up.
  Needs root and iproute2 (`ip netns`).
  """

  defstruct [:ns_a, :ns_b, :if_a, :if_b, :ip_a, :ip_b]

  @type t :: %__MODULE__{}

  @doc "True when this process may create network namespaces (root + `ip netns` works)."
  @spec available?() :: boolean()
  def available? do
    probe = "hpvprobe#{:os.getpid()}"

    with true <- System.find_executable("ip") != nil,
         {_, 0} <- ip(["netns", "add", probe]) do
      ip(["netns", "del", probe])
      true
    else
      _ -> false
    end
  end

  @doc "Creates the namespaces and the (up) veth pair."
  @spec setup!() :: t()
  def setup! do
    id =
      rem(String.to_integer(to_string(:os.getpid())), 10_000) * 10 +
        rem(System.unique_integer([:positive]), 10)

    n = rem(id, 250) + 1

    t = %__MODULE__{
      ns_a: "hpv#{id}a",
      ns_b: "hpv#{id}b",
      if_a: "hpv#{id}a0",
      if_b: "hpv#{id}b0",
      ip_a: {10, 231, n, 1},
      ip_b: {10, 231, n, 2}
    }

    ip!(["netns", "add", t.ns_a])
    ip!(["netns", "add", t.ns_b])

    ip!([
      "link",
      "add",
      t.if_a,
      "netns",
      t.ns_a,
      "type",
      "veth",
      "peer",
      "name",
      t.if_b,
      "netns",
      t.ns_b
    ])

    ip!(["-n", t.ns_a, "addr", "add", "#{:inet.ntoa(t.ip_a)}/24", "dev", t.if_a])
    ip!(["-n", t.ns_b, "addr", "add", "#{:inet.ntoa(t.ip_b)}/24", "dev", t.if_b])

    for {ns, dev} <- [{t.ns_a, t.if_a}, {t.ns_b, t.if_b}] do
      ip!(["-n", ns, "link", "set", "lo", "up"])
      ip!(["-n", ns, "link", "set", dev, "up"])
    end

    t
  end

  @doc "Cuts the two sides apart."
  @spec partition!(t()) :: :ok
  def partition!(t), do: ip!(["-n", t.ns_a, "link", "set", t.if_a, "down"])

  @doc "Joins the two sides again."
  @spec heal!(t()) :: :ok
  def heal!(t), do: ip!(["-n", t.ns_a, "link", "set", t.if_a, "up"])

  @doc """
  Kills every process still inside the namespaces (nodes, their epmd) and
  deletes them (the veth pair goes with them).
  """
  @spec teardown(t()) :: :ok
  def teardown(t) do
    for ns <- [t.ns_a, t.ns_b] do
      {pids, _} = ip(["netns", "pids", ns])

      for pid <- String.split(pids), pid =~ ~r/^\d+$/ do
        :os.cmd(String.to_charlist("kill -9 #{pid}"))
      end

      ip(["netns", "del", ns])
    end

    :ok
  end

  defp ip(args), do: System.cmd("ip", args, stderr_to_stdout: true)

  defp ip!(args) do
    case ip(args) do
      {_, 0} -> :ok
      {out, status} -> raise "ip #{Enum.join(args, " ")} failed (#{status}): #{out}"
    end
  end
end
