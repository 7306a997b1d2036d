"""terrafix.estimation"""
