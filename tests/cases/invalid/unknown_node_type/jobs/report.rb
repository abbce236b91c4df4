puts "report"
